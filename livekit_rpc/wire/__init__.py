"""Wire layer: constants, UTF-8 helpers, codecs and packet builders over livekit-protocol."""
