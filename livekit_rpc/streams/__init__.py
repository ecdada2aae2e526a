"""Data streams: sans-I/O framing and assembly, with asyncio readers, writers and managers."""
