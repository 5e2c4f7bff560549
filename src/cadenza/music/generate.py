"""The old name of ``cadenza.music.composition``, kept only for ``server/app.py`` and
``music/studio.py`` (being changed elsewhere; issue 27). Import ``compose`` and
``continue_piece`` from ``cadenza.music.composition``; remove this module once they do."""

from cadenza.music.composition import compose, continue_piece  # noqa: F401

__all__ = ["compose", "continue_piece"]
