"""Cadenza: a Sparse Transformer for music (and text, images, audio) that runs on a CPU."""

from cadenza._version import __version__


def __getattr__(name):  # lazy exports: `import cadenza` stays light (no torch) for the CLI
    if name in ("ModelConfig", "SparseTransformer"):
        from cadenza import model

        return getattr(model, name)
    raise AttributeError(f"module 'cadenza' has no attribute {name!r}")
