"""Interop tests against livekit-client's own code running in Node (see node_peer.py)."""
