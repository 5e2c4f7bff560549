"""Play along: Cadenza accompanies a person live, in time (issue 26).

- ``records``: what goes in (``NoteOn``, ``NoteOff``) and out (``OutEvent``), ``LiveSettings``
  and the bounds of every setting (``BOUNDS``);
- ``clock``: the beat grid, fixed or following the player's tempo;
- ``listener``: the player's line as tokens in a kept decoder, and the model's prediction of
  the next note (and, for the ``answer`` role, its own bar);
- ``harmony``: chords of the key and their voicings per role, chosen against the prediction;
- ``consonance``: the consonance rule and the share of consonant notes of a take;
- ``engine``: ``LiveEngine``, deciding each beat before it comes;
- ``simulate``: timed events through an engine without hardware (tests, the benchmark);
- ``ports``: MIDI keyboards and DAWs (mido / python-rtmidi) and the real-time loop.

The command is ``cadenza live``; the studio's socket is ``cadenza.server.studio_live``.
docs/play_along.md tells the whole story.
"""

from cadenza.music.live.records import (BOUNDS, DENSITIES, ROLES, Decision, LiveSettings, NoteOff, NoteOn,  # noqa: F401
                                        OutEvent, TakeNote)


def __getattr__(name):
    if name == "LiveEngine":
        from cadenza.music.live.engine import LiveEngine

        return LiveEngine
    raise AttributeError(f"module 'cadenza.music.live' has no attribute {name!r}")


__all__ = ["BOUNDS", "DENSITIES", "ROLES", "Decision", "LiveEngine", "LiveSettings", "NoteOff", "NoteOn", "OutEvent",
           "TakeNote"]
