"""The engine: what clients and in-task clients share (sessions, futures, the run
context). Trio and threads, no sockets; it never imports the network shell or the
client classes (their needs are the Protocols in ``protocols``)."""
