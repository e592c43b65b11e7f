"""The Trio shell: WebSocket connections, the scheduler server, the worker node, slots."""
