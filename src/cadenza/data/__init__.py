"""Dataset builders (text, music, ...) and the shared token-memmap format."""
