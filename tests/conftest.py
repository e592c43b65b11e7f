"""Shared test configuration: pytest-trio runs every `async def` test under Trio."""
