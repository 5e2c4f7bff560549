"""The music21 collections Cadenza reads: style, composer, default tempo, licence, how each is split."""

from __future__ import annotations

from dataclasses import dataclass



_PD = ("composition in the public domain; encoding distributed with music21 under its corpus "
       "terms (music21/corpus/license.txt)")


@dataclass(frozen=True)
class Collection:
    name: str
    style: str
    composer: str          # used when the score names none
    licence: str
    tempo: float           # quarter notes per minute when the score has no tempo mark
    split_by: str = "id"   # "id", "title" (tunes recur across books) or "melody" (chorale tunes recur)


def _c(name, style, composer, tempo=100.0, licence=_PD, split_by="id"):
    return Collection(name, style, composer, licence, tempo, split_by)


COLLECTIONS: dict[str, Collection] = {c.name: c for c in [
    _c("bach", "bach", "Johann Sebastian Bach", 88, split_by="melody"),
    _c("palestrina", "renaissance", "Giovanni Pierluigi da Palestrina", 120),
    _c("josquin", "renaissance", "Josquin des Prez", 120),
    _c("luca", "renaissance", "Gregorio Luca", 120),
    _c("lusitano", "renaissance", "Vicente Lusitano", 120),
    _c("monteverdi", "renaissance", "Claudio Monteverdi", 100),
    _c("trecento", "medieval", "anonymous (Italian trecento)", 90),
    _c("ciconia", "medieval", "Johannes Ciconia", 90),
    _c("handel", "baroque", "George Frideric Handel", 96),
    _c("corelli", "baroque", "Arcangelo Corelli", 96),
    _c("cpebach", "baroque", "Carl Philipp Emanuel Bach", 100),
    _c("haydn", "classical", "Joseph Haydn", 112),
    _c("mozart", "classical", "Wolfgang Amadeus Mozart", 112),
    _c("beethoven", "classical", "Ludwig van Beethoven", 112),
    _c("schubert", "romantic", "Franz Schubert", 100),
    _c("schumann_robert", "romantic", "Robert Schumann", 100),
    _c("schumann_clara", "romantic", "Clara Schumann", 100),
    _c("chopin", "romantic", "Frederic Chopin", 100),
    _c("weber", "romantic", "Carl Maria von Weber", 100),
    _c("verdi", "romantic", "Giuseppe Verdi", 100),
    _c("beach", "romantic", "Amy Beach", 100),
    _c("liliuokalani", "romantic", "Liliuokalani", 90),
    _c("schoenberg", "modern", "Arnold Schoenberg", 90),
    _c("webern", "modern", "Anton Webern", 80),
    _c("joplin", "popular", "Scott Joplin", 100),
    _c("johnson_j_r", "popular", "J. Rosamond Johnson", 90),
    _c("leadSheet", "popular", "unknown", 110),
    _c("essenFolksong", "folk", "traditional (Essen folk song collection)", 100,
       licence=("Essen Folksong Collection: traditional songs; encodings for non-commercial use, distributed "
                "with music21 by permission of E. Dahlig-Turek and S. Schlien "
                "(music21/corpus/essenFolksong/license.txt)"), split_by="title"),
    _c("miscFolk", "folk", "traditional", 100,
       licence="traditional tunes in the public domain; ABC transcriptions distributed with music21",
       split_by="title"),
    _c("oneills1850", "fiddle", "traditional (O'Neill's Music of Ireland, 1903)", 110,
       licence="public domain (O'Neill's Music of Ireland, 1903); ABC transcriptions distributed with music21",
       split_by="title"),
    _c("ryansMammoth", "fiddle", "traditional (Ryan's Mammoth Collection, 1883)", 110,
       licence="public domain (Ryan's Mammoth Collection, 1883); ABC transcriptions distributed with music21",
       split_by="title"),
    _c("airdsAirs", "fiddle", "traditional (Aird's Airs, 1782-1803)", 100,
       licence="public domain (Aird's Selection of Airs, 1782-1803); ABC transcriptions distributed with music21",
       split_by="title"),
    _c("nottingham-dataset", "fiddle", "traditional (Nottingham Music Database)", 110,
       licence="traditional tunes in the public domain; Nottingham Music Database ABC distributed with music21",
       split_by="title"),
]}
# Not repertoire: files that test music21's own features.
EXCLUDED_COLLECTIONS = {"demos": "music21 feature test files", "theoryExercises": "theory exercises"}


def use_of(licence: str) -> str:
    """What a piece's licence allows: "non-commercial", "unknown" or "any"."""
    text = (licence or "").lower()
    if "non-commercial" in text or "noncommercial" in text:
        return "non-commercial"
    if not text or "unknown" in text:
        return "unknown"
    return "any"
