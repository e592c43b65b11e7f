"""The sans-IO core: scheduler and worker state machines. No trio, no sockets, no clock,
no pickle. Events in, commands out."""
