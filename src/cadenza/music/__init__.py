"""Music on top of the model: compose, continue, predict, harmonize, render, provenance.

- ``registry``: find and list music model directories (weights + tokenizer + card);
  ``load``: load one (``load_model``, ``MusicModel``) or write one (``save_model``).
- ``composition``: ``compose``, ``continue_piece``; ``harmony``: ``harmonize``; ``predict``:
  ``predict_next`` (all decode under the REMI grammar of ``grammar``, through
  ``cadenza.sampling.Decoder``).
- ``output``: ``write_piece`` writes MIDI (+ WAV, PNG, JSON sidecar) with provenance.
- ``preflight``: what is checked before any work (inputs, output folders, SoundFont, length
  against the render limit, free space).

The names below are importable from ``cadenza.music`` directly (loaded on first use, so
``import cadenza.music`` stays light).
"""

_EXPORTS = {
    "compose": "composition", "continue_piece": "composition", "harmonize": "harmony", "predict_next": "predict",
    "Piece": "piece", "Prediction": "predict", "NextNote": "predict",
    "load_model": "load", "list_models": "registry", "default_model_dir": "registry", "MusicModel": "load",
    "save_model": "load", "write_piece": "output",
}


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"cadenza.music.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'cadenza.music' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
