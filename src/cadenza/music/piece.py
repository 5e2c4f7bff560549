"""``Piece``: what compose, continue and harmonize return: the tokens, what was asked, who
wrote which notes (``score()`` puts the input's notes and the model's on separate, named tracks)."""

from __future__ import annotations

from dataclasses import dataclass, field


# --------------------------------------------------------------------------- the result
@dataclass
class Piece:
    """A generated piece: its tokens and what it took to make them.

    ``ids`` is the whole sequence (BOS, prefix, body and EOS). ``kept`` holds the notes that
    came from the input (continue / harmonize) as (onset, duration, pitch, program) in the
    decoded score's ticks, so ``score()`` can put them on their own, credited tracks.
    """

    kind: str
    ids: list
    codec: object = field(repr=False)
    tempo: float
    seed: int
    conditioning: dict
    settings: dict
    model: dict
    kept: frozenset | None = None
    kept_label: str | None = None
    input_tokens: int = 0           # tokens of ids that came from the input
    generated_tokens: int = 0
    elapsed_s: float = 0.0
    first_bar_s: float | None = None
    bars: int = 0
    stopped: str = ""               # "eos" (the model ended it), "tonic" (ended on its last tonic), "length" or "tokens"

    def score(self):
        """The piece as a symusic score: input notes and Cadenza's notes on separate, named tracks."""
        import symusic

        s = self.codec.decode(self.ids, tempo=self.tempo)
        tracks = list(s.tracks)
        s.tracks.clear()
        gen_label = {"compose": "Cadenza", "continue": "Cadenza continuation",
                     "harmonize": "Cadenza harmony"}.get(self.kind, "Cadenza")
        for t in tracks:
            prog = -1 if t.is_drum else int(t.program)
            mine, theirs = [], []
            for n in t.notes:
                key = (int(n.time), int(n.duration), int(n.pitch), prog)
                (theirs if self.kept is not None and key in self.kept else mine).append(n)
            for notes, label in ((theirs, self.kept_label or "input"), (mine, gen_label)):
                if not notes:
                    continue
                nt = symusic.Track(name=label, program=int(t.program), is_drum=bool(t.is_drum))
                for n in notes:
                    nt.notes.append(n)
                s.tracks.append(nt)
        return s

    @property
    def seconds(self) -> float:
        """Length of the music in seconds (to the end of the last note)."""
        s = self.codec.decode(self.ids, tempo=self.tempo)
        return float(s.to("second").end()) if s.note_num() else 0.0

    def provenance(self) -> dict:
        from cadenza._version import __version__

        return {"generator": "Cadenza", "cadenza_version": __version__, "kind": self.kind,
                "model": self.model, "seed": self.seed, "settings": self.settings,
                "conditioning": self.conditioning, "tempo_qpm": self.tempo, "bars": self.bars,
                "tokens": len(self.ids), "generated_tokens": self.generated_tokens,
                "input_tokens": self.input_tokens, "stopped": self.stopped}


def readable_prefix(codec, ids) -> dict:
    """The conditioning a prefix of ``ids`` holds, in JSON-ready form (the metre as "3/4")."""
    cond, _ = codec.parse_prefix(ids)
    out = dict(cond)
    if "time_signature" in out:
        n, d = out["time_signature"]
        out["time_signature"] = f"{n}/{d}"
    return out


def finish_ids(codec, prompt, new) -> list[int]:
    """The prompt and the new tokens, closed with EOS."""
    ids = list(prompt) + list(new)
    if not ids or ids[-1] != codec.eos_id:
        ids.append(codec.eos_id)
    return ids
