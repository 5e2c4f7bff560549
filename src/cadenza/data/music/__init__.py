"""Music corpus builders: the music21 package's bundled corpus, or a folder of MIDI files.

Both write the shared token format (``cadenza.data.format``) with ``modality="music"``:
one stream per split where every piece is ``BOS prefix body EOS`` (see
``cadenza.codecs.music``), plus

- ``tokenizer.json``: the exact music codec, ``MusicCodec.load(DATA_DIR)`` rebuilds it;
- ``manifest.csv``: one row per piece, kept or not: id, source file, collection, composer,
  title, licence, use (what the licence allows), style, split, status (ok / skipped /
  duplicate / excluded), reason, notes, tokens, key, tempo, metre, valence and energy (the
  mean of the piece's raw segment values);
- ``build.log``: the skipped pieces and why, and the build summary.

Splits are by group: a deterministic hash of the group's key, where a group joins the
versions of one tune (the same normalised title in the collections split by title, or the
same opening 16 or 32 melodic intervals in any collection; see ``split_groups``), so one
tune transcribed twice lands in one split. Pieces whose note content is identical to an earlier piece are
dropped as duplicates. Work goes to a pool of worker processes, one source file per task,
with a progress bar; results are cached per source file under ``DATA_DIR/.cache`` so an
interrupted build resumes where it stopped.

Modules: ``collections`` (what is read, and its licences), ``music21`` (reading the corpus
files), ``splits`` (which split a piece goes to), ``pool`` (the worker pool and the per-file
cache), ``manifest`` (splits, levels and duplicates, the manifest, log and token files),
``build`` (the two builds, driving both). Their public names are importable from
``cadenza.data.music``.
"""

from cadenza.data.music.build import build_midi, build_music21  # noqa: F401
from cadenza.data.music.manifest import MANIFEST_FIELDS, BuildSummary  # noqa: F401
from cadenza.data.music.pool import CONVERTER_VERSION  # noqa: F401
from cadenza.data.music.collections import COLLECTIONS, EXCLUDED_COLLECTIONS, Collection, use_of  # noqa: F401
from cadenza.data.music.music21 import (MUSIC21_EXTENSIONS, TPQ, m21_to_score, music21_corpus_dir,  # noqa: F401
                                        music21_sources, read_score_text, split_abc)
from cadenza.data.music.splits import melody_signature, normalise_title, split_groups, split_of  # noqa: F401
