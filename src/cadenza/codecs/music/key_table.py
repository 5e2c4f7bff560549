"""The key table of a music corpus (``mood_keys.json``): for every valence level, how many pieces
open their first segment at that level in each key. Written by the corpus build beside the
tokenizer, copied into a model folder with it, read by ``cadenza.music.modes``."""

from __future__ import annotations

import json
from pathlib import Path

from cadenza.errors import ModelFileError

MOOD_KEYS_FILE = "mood_keys.json"


def key_table(pieces, codec) -> dict:
    """{"levels": L, "counts": {level: {key: pieces}}} over token pieces (BOS prefix body EOS):
    each piece's key token and the valence level of its first Mood token."""
    counts: dict[int, dict[str, int]] = {}
    for ids in pieces:
        ids = [int(i) for i in ids]
        cond, start = codec.parse_prefix(ids)
        key = cond.get("key")
        level = None
        for i in ids[start:]:
            if codec.token(i).startswith("Mood_"):
                level = codec.mood_levels_of(i)[0]
                break
        if key and level is not None:
            row = counts.setdefault(int(level), {})
            row[key] = row.get(key, 0) + 1
    return {"levels": int(codec.config.levels),
            "counts": {str(lv): dict(sorted(row.items())) for lv, row in sorted(counts.items())}}


def write_table(table: dict, folder) -> Path:
    from cadenza.io import write_text_atomic

    path = Path(folder) / MOOD_KEYS_FILE
    write_text_atomic(path, json.dumps(table, indent=1) + "\n")
    return path


def read_table(folder) -> dict | None:
    """The folder's key table, None where it has none (older models: the network picks the key)."""
    path = Path(folder) / MOOD_KEYS_FILE
    if not path.is_file():
        return None
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(table.get("counts"), dict):
            raise ValueError("no counts")
        return table
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{path} is not a valid key table ({exc}); copy it again from the dataset "
                             f"folder or delete it") from None
