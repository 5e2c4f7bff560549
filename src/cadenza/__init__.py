"""Cadenza: a Sparse Transformer for music (and text, images, audio) that runs on a CPU."""

__version__ = "0.1.0"
