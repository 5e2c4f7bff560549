"""The music21 collections Cadenza reads: style, composer, default tempo, licence, how each is split."""

from __future__ import annotations

from dataclasses import dataclass



PUBLIC_DOMAIN = ("composition in the public domain; encoding distributed with music21 under its corpus "
       "terms (music21/corpus/license.txt)")


@dataclass(frozen=True)
class Collection:
    name: str
    style: str
    composer: str          # used when the score names none
    licence: str
    tempo: float           # quarter notes per minute when the score has no tempo mark
    split_by: str = "id"   # "id", "title" (tunes recur across books) or "melody" (chorale tunes recur)


def _collection(name, style, composer, tempo=100.0, licence=PUBLIC_DOMAIN, split_by="id"):
    return Collection(name, style, composer, licence, tempo, split_by)


COLLECTIONS: dict[str, Collection] = {c.name: c for c in [
    _collection("bach", "bach", "Johann Sebastian Bach", 88, split_by="melody"),
    _collection("palestrina", "renaissance", "Giovanni Pierluigi da Palestrina", 120),
    _collection("josquin", "renaissance", "Josquin des Prez", 120),
    _collection("luca", "renaissance", "Gregorio Luca", 120),
    _collection("lusitano", "renaissance", "Vicente Lusitano", 120),
    _collection("monteverdi", "renaissance", "Claudio Monteverdi", 100),
    _collection("trecento", "medieval", "anonymous (Italian trecento)", 90),
    _collection("ciconia", "medieval", "Johannes Ciconia", 90),
    _collection("handel", "baroque", "George Frideric Handel", 96),
    _collection("corelli", "baroque", "Arcangelo Corelli", 96),
    _collection("cpebach", "baroque", "Carl Philipp Emanuel Bach", 100),
    _collection("haydn", "classical", "Joseph Haydn", 112),
    _collection("mozart", "classical", "Wolfgang Amadeus Mozart", 112),
    _collection("beethoven", "classical", "Ludwig van Beethoven", 112),
    _collection("schubert", "romantic", "Franz Schubert", 100),
    _collection("schumann_robert", "romantic", "Robert Schumann", 100),
    _collection("schumann_clara", "romantic", "Clara Schumann", 100),
    _collection("chopin", "romantic", "Frederic Chopin", 100),
    _collection("weber", "romantic", "Carl Maria von Weber", 100),
    _collection("verdi", "romantic", "Giuseppe Verdi", 100),
    _collection("beach", "romantic", "Amy Beach", 100),
    _collection("liliuokalani", "romantic", "Liliuokalani", 90),
    _collection("schoenberg", "modern", "Arnold Schoenberg", 90),
    _collection("webern", "modern", "Anton Webern", 80),
    _collection("joplin", "popular", "Scott Joplin", 100),
    _collection("johnson_j_r", "popular", "J. Rosamond Johnson", 90),
    _collection("leadSheet", "popular", "unknown", 110),
    _collection("essenFolksong", "folk", "traditional (Essen folk song collection)", 100,
       licence=("Essen Folksong Collection: traditional songs; encodings for non-commercial use, distributed "
                "with music21 by permission of E. Dahlig-Turek and S. Schlien "
                "(music21/corpus/essenFolksong/license.txt)"), split_by="title"),
    _collection("miscFolk", "folk", "traditional", 100,
       licence="traditional tunes in the public domain; ABC transcriptions distributed with music21",
       split_by="title"),
    _collection("oneills1850", "fiddle", "traditional (O'Neill's Music of Ireland, 1903)", 110,
       licence="public domain (O'Neill's Music of Ireland, 1903); ABC transcriptions distributed with music21",
       split_by="title"),
    _collection("ryansMammoth", "fiddle", "traditional (Ryan's Mammoth Collection, 1883)", 110,
       licence="public domain (Ryan's Mammoth Collection, 1883); ABC transcriptions distributed with music21",
       split_by="title"),
    _collection("airdsAirs", "fiddle", "traditional (Aird's Airs, 1782-1803)", 100,
       licence="public domain (Aird's Selection of Airs, 1782-1803); ABC transcriptions distributed with music21",
       split_by="title"),
    _collection("nottingham-dataset", "fiddle", "traditional (Nottingham Music Database)", 110,
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
