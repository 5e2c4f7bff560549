"""How the voices ``harmonize`` adds move: the textures (``TEXTURES``) and which one a style
takes (``texture_for``); ``harmony_policy.HarmonyPolicy`` applies them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Texture:
    """How the added voices move (``TEXTURES``; ``--style`` picks one).

    ``complete``: where the voices must all sound under the melody: at every melody onset
    ("melody") or only at melody onsets on strong beats and the first ("strong").
    ``starts``: where a voice may start a note: anywhere the melody plays ("any") or only where
    the chord must be complete ("complete": block chords). ``sevenths``: seventh chords
    besides triads. ``passing``: off the beat, a voice may move by step to a note dissonant
    with the melody. ``rules``: False turns every rule off (the plain grammar of voices below
    the melody, as before issue 28).
    """

    name: str
    complete: str = "melody"
    starts: str = "any"
    sevenths: bool = True
    passing: bool = True
    rules: bool = True


TEXTURES = {
    "chorale": Texture("chorale"),
    "polyphony": Texture("polyphony", complete="strong", sevenths=False),
    "chords": Texture("chords", complete="strong", starts="complete", sevenths=False, passing=False),
    "free": Texture("free", rules=False),
}
STYLE_TEXTURES = {"bach": "chorale", "renaissance": "polyphony", "medieval": "polyphony", "folk": "chords",
                  "fiddle": "chords"}


def texture_for(style: str | None) -> Texture:
    """The texture of a style: bach chorale, renaissance polyphony, folk block chords (others: chorale)."""
    return TEXTURES[STYLE_TEXTURES.get(style or "", "chorale")]
