"""Three well-known melodies (public domain) for the harmony benchmark's check outside the
chorales: a hymn, a symphonic theme and an English air. Each is (name, key, metre, notes)
with notes as (MIDI pitch or None for a rest, length in quarter notes); an upbeat starts the
first bar with a rest."""

from __future__ import annotations

TUNES = {
    # "Old Hundredth" (Genevan Psalter, 1551), in G.
    "old-hundredth": ("G", (4, 4), [
        (None, 2), (67, 2), (67, 1), (66, 1), (64, 1), (62, 1), (67, 1), (69, 1), (71, 2),
        (71, 2), (71, 1), (71, 1), (69, 1), (67, 1), (72, 1), (71, 1), (69, 2),
        (67, 2), (69, 1), (71, 1), (69, 1), (67, 1), (64, 1), (66, 1), (67, 2),
        (74, 2), (71, 1), (67, 1), (69, 1), (72, 1), (71, 1), (69, 1), (67, 4)]),
    # Beethoven, Symphony No. 9, "Ode to Joy" theme, in G.
    "ode-to-joy": ("G", (4, 4), [
        (71, 1), (71, 1), (72, 1), (74, 1), (74, 1), (72, 1), (71, 1), (69, 1),
        (67, 1), (67, 1), (69, 1), (71, 1), (71, 1.5), (69, 0.5), (69, 2),
        (71, 1), (71, 1), (72, 1), (74, 1), (74, 1), (72, 1), (71, 1), (69, 1),
        (67, 1), (67, 1), (69, 1), (71, 1), (69, 1.5), (67, 0.5), (67, 2),
        (69, 1), (69, 1), (71, 1), (67, 1), (69, 1), (71, 0.5), (72, 0.5), (71, 1), (67, 1),
        (69, 1), (71, 0.5), (72, 0.5), (71, 1), (69, 1), (67, 1), (69, 1), (62, 2),
        (71, 1), (71, 1), (72, 1), (74, 1), (74, 1), (72, 1), (71, 1), (69, 1),
        (67, 1), (67, 1), (69, 1), (71, 1), (69, 1.5), (67, 0.5), (67, 2)]),
    # "Greensleeves" (16th-century English air), in A minor.
    "greensleeves": ("Am", (6, 8), [
        (None, 2.5), (69, 0.5),
        (72, 1), (74, 0.5), (76, 0.75), (77, 0.25), (76, 0.5), (74, 1), (71, 0.5), (67, 0.75), (69, 0.25),
        (71, 0.5),
        (72, 1), (69, 0.5), (69, 0.75), (68, 0.25), (69, 0.5), (71, 1), (68, 0.5), (64, 1), (69, 0.5),
        (72, 1), (74, 0.5), (76, 0.75), (77, 0.25), (76, 0.5), (74, 1), (71, 0.5), (67, 0.75), (69, 0.25),
        (71, 0.5),
        (72, 0.75), (71, 0.25), (69, 0.5), (68, 0.75), (66, 0.25), (68, 0.5), (69, 1.5), (69, 1)]),
}


def tune_score(name: str, tpq: int = 480, qpm: float = 96.0):
    """A one-track symusic score of a tune (with its metre and key signature)."""
    import symusic

    from cadenza.codecs.music.features import parse_key

    key, (num, den), notes = TUNES[name]
    s = symusic.Score(tpq)
    s.tempos.append(symusic.Tempo(0, qpm=qpm))
    s.time_signatures.append(symusic.TimeSignature(0, num, den))
    tonic, mode = parse_key(key)
    sharps = {0: 0, 7: 1, 2: 2, 9: 3, 4: 4, 11: 5, 6: 6, 5: -1, 10: -2, 3: -3, 8: -4, 1: -5}[
        (tonic + (3 if mode == "minor" else 0)) % 12]
    s.key_signatures.append(symusic.KeySignature(0, sharps, 1 if mode == "minor" else 0))
    t = symusic.Track(name=name, program=0)
    at = 0
    for pitch, q in notes:
        ticks = int(round(q * tpq))
        if pitch is not None:
            t.notes.append(symusic.Note(at, ticks, int(pitch), 90))
        at += ticks
    s.tracks.append(t)
    return s
