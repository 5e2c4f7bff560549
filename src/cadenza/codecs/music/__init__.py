"""Symbolic music codec (version 2): MIDI / symusic scores <-> token ids.

MidiTok's REMI (with ``Program`` tokens in one stream, so several instruments share one
sequence) is made lean and given segment controls (``lean_body`` / ``expand_body``)::

    BOS  Style_<s>  Key_<k>  Tempo_<bpm>  TimeSig_<n/d>                 (the prefix)
    Bar [TimeSig] [Mood_<v>.<e>]  Position [Program] Pitch [Velocity] Duration ...  EOS

A TimeSig, Program or Velocity appears only where it changes (then holds until the next
one), so a note costs about three tokens; a ``Mood`` token opens every ``segment_bars``-th
bar with the valence and energy levels of that segment's own notes
(``cadenza.codecs.music.segments``), cut at the edges stored in the config (the corpus quintiles).

- Style: the collection or composer family (``STYLES``); ``other`` for anything unknown.
- Key: Krumhansl-Kessler key finding on the duration-weighted pitch-class histogram,
  steered by the file's key signature when it has one (24 keys, ``Key_C`` .. ``Key_Bm``).
- Tempo: the time-weighted tempo of the file, snapped to ``TEMPO_BINS`` (log-nearest).
- TimeSig: MidiTok's own time-signature token for the first bar (*/2 metres are written
  as the same bar length over 4: 2/2 -> 4/4, 3/2 -> 6/4).
- ``describe`` still computes a whole piece's valence and energy (for the manifest).

Ids ``0 .. miditok_vocab-1`` are MidiTok's (PAD=0, BOS=1, EOS=2); the conditioning tokens
follow. The vocabulary is small (about 600 ids). ``MusicCodec.save`` writes a JSON file
from which ``MusicCodec.load`` rebuilds exactly the same tokenizer (checked by a hash of
the whole vocabulary).

Round trip: ``decode(encode(score))`` gives back every note of ``quantize(score)``
(pitch, onset and duration on the grid of ``positions_per_beat``, velocity bin, program).
What quantization loses is documented in ``quantize``.

The package, one job a module (imports run down this list):

- ``keys``: Krumhansl-Kessler key profiles; ``midi``: MIDI reading/writing and note clean-up;
- ``features``: the analysis the prefix is made from (key, tempo, valence, energy: ``describe``);
- ``segments``: the valence and energy of each segment (the Mood tokens' values);
- ``config``: the codec's constants and ``MusicCodecConfig``; ``vocab``: the token table and
  the prefix and control ids (``MusicVocab``);
- ``codec``: ``MusicCodec``, scores <-> tokens and the tokenizer file.

Their public names are importable from here.
"""

from cadenza.codecs.music.codec import MusicCodec
from cadenza.codecs.music.config import (CODEC_NAME, CODEC_VERSION, CONTROL_SLOTS, FEATURES_VERSION, MIN_STYLE_PIECES,
                                         PREFIX_SLOTS, STYLES, TEMPO_BINS, MusicCodecConfig)
from cadenza.codecs.music.features import (DEFAULT_TEMPO, LEVELS, MOODS, NOTE_NAMES, MusicFeatures, describe,
                                           estimate_key, key_name, level_of, mood_levels, parse_key)
from cadenza.codecs.music.midi import (load_midi, merge_tracks_by_program, normalize_time_signature, note_tuples,
                                       score_from_bytes, score_of_notes, split_overlapping_notes, write_midi)
from cadenza.codecs.music.segments import quantile_edges, segment_values
from cadenza.codecs.music.vocab import MusicVocab

__all__ = [
    "CODEC_NAME", "CODEC_VERSION", "CONTROL_SLOTS", "DEFAULT_TEMPO", "FEATURES_VERSION", "LEVELS", "MIN_STYLE_PIECES",
    "MOODS", "NOTE_NAMES", "PREFIX_SLOTS", "STYLES", "TEMPO_BINS",
    "MusicCodec", "MusicCodecConfig", "MusicFeatures", "MusicVocab",
    "describe", "estimate_key", "key_name", "level_of", "load_midi", "merge_tracks_by_program", "mood_levels",
    "normalize_time_signature", "note_tuples", "parse_key", "quantile_edges", "score_from_bytes", "score_of_notes",
    "segment_values", "split_overlapping_notes", "write_midi",
]
