"""The end of a corpus build: licences, splits, mood level edges and duplicates, then the manifest, build log and token files."""

from __future__ import annotations

import csv
import hashlib
import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cadenza.io import write_text_atomic
from cadenza.data.music.collections import use_of
from cadenza.data.music.splits import split_groups, split_of

MANIFEST_FIELDS = ["id", "source", "number", "collection", "composer", "title", "licence", "use", "style",
                   "split", "status", "reason", "notes", "tokens", "key", "tempo", "tempo_source",
                   "time_signature", "valence", "energy", "seconds",
                   "split_key", "repeats", "written_notes", "written_tokens"]


@dataclass
class BuildSummary:
    out_dir: Path
    pieces_ok: int
    pieces_skipped: int
    pieces_duplicate: int
    tokens: dict
    pieces_per_split: dict
    seconds: float
    vocab_size: int
    tokens_per_note: float = 0.0
    repeats: dict | None = None   # what playing the repeats did: pieces changed, tokens added

    def lines(self) -> list[str]:
        tok = ", ".join(f"{k} {v:,}" for k, v in self.tokens.items())
        per = ", ".join(f"{k} {v}" for k, v in self.pieces_per_split.items())
        out = [f"wrote {self.out_dir}: {self.pieces_ok} pieces ({per}), {self.pieces_skipped} skipped, "
               f"{self.pieces_duplicate} duplicates dropped",
               f"tokens: {tok}; {self.tokens_per_note:.2f} tokens per note; vocabulary {self.vocab_size}; "
               f"{self.seconds:.1f} s"]
        if self.repeats:
            r = self.repeats
            out.append(f"repeats played: {r['expanded']:,} pieces written out as played (+{r['tokens_added']:,} "
                       f"tokens, {r['tokens_written']:,} -> {r['tokens_played']:,} in those pieces), "
                       f"{r['failed']} kept as written where music21 could not expand them")
        return out


def finish_build(out_dir: Path, codec, all_results: list, t0: float, val_fraction: float, test_fraction: float,
                 source_info: dict, split_by: dict, progress: bool, fixed_tokenizer: bool = False,
                 commercial_ok: bool = False, allow_unknown_licence: bool = False) -> BuildSummary:
    from cadenza.data.format import write_dataset

    from cadenza.codecs.music import level_of, quantile_edges

    all_results.sort(key=lambda r: r[0]["id"])
    kept = []
    for rec, ids in all_results:   # --commercial-ok: leave out what the licences do not allow
        rec["use"] = use_of(rec.get("licence", ""))
        if ids is not None and commercial_ok and (rec["use"] == "non-commercial" or (
                rec["use"] == "unknown" and not allow_unknown_licence)):
            rec = dict(rec, status="excluded", reason=f"licence: {rec['use']} (--commercial-ok)")
            ids = None
        kept.append((rec, ids))
    all_results = kept
    splits = {"train": [], "val": [], "test": []}
    seen_bodies: dict[str, str] = {}
    records = []
    groups = split_groups([r for r, _ in all_results], split_by)
    for rec, _ in all_results:
        rec["split_key"] = groups[rec["id"]]
        rec["split"] = split_of(rec["split_key"], val_fraction, test_fraction)
    # Control levels: the quintiles of the training split's raw segment values, stored in
    # the tokenizer (the per-file cache keeps raw values, so this is cheap to redo).
    train_raw = [v for rec, ids in all_results if ids is not None and rec["split"] == "train" for v in rec["_raw"]]
    if train_raw and not fixed_tokenizer:
        cfg = codec.config
        cfg.valence_edges = quantile_edges([v for v, _ in train_raw], cfg.levels)
        cfg.energy_edges = quantile_edges([e for _, e in train_raw], cfg.levels)
    counts: dict[str, int] = {}
    for rec, ids in all_results:
        if ids is not None and rec["split"] == "train":
            counts[rec["style"]] = counts.get(rec["style"], 0) + 1
    if not fixed_tokenizer:
        codec.config.style_pieces = dict(sorted(counts.items()))
    notes_total = tokens_total = 0
    for rec, ids in all_results:
        rec = dict(rec)
        where, raw = rec.pop("_controls", None), rec.pop("_raw", None)
        if ids is not None:
            ids = np.array(ids, dtype=np.int32)
            for w, (v, e) in zip(where, raw):
                ids[w] = codec.mood_id(level_of(float(np.clip(v, 0, 1)), codec.config.valence_edges),
                                       level_of(float(np.clip(e, 0, 1)), codec.config.energy_edges))
            if raw:
                rec.update(valence=round(float(np.mean([v for v, _ in raw])), 3),
                           energy=round(float(np.mean([e for _, e in raw])), 3))
            body_hash = hashlib.sha1(np.asarray(ids[5:], dtype=np.int32).tobytes()).hexdigest()
            if body_hash in seen_bodies:
                rec.update(status="duplicate", reason=f"same notes as {seen_bodies[body_hash]}")
                ids = None
            else:
                seen_bodies[body_hash] = rec["id"]
                notes_total += int(rec.get("notes", 0))
                tokens_total += len(ids)
        if ids is not None:
            splits[rec["split"]].append(np.asarray(ids, dtype=np.int64))
        records.append(rec)
    arrays = {k: (np.concatenate(v) if v else np.zeros(0, dtype=np.int64)) for k, v in splits.items()}
    if codec.config.tokenization == "REMI" and splits["train"]:   # the keys each mood opens in (music.modes)
        from cadenza.codecs.music.key_table import key_table, write_table

        write_table(key_table(splits["train"], codec), out_dir)

    ok = [r for r in records if r["status"] == "ok"]
    skipped = [r for r in records if r["status"] == "skipped"]
    dups = [r for r in records if r["status"] == "duplicate"]
    per_coll: dict[str, dict] = {}
    for r in records:
        d = per_coll.setdefault(r["collection"], {"ok": 0, "skipped": 0, "duplicate": 0, "excluded": 0,
                                                  "licence": r["licence"]})
        d[r["status"]] += 1
    seconds = time.time() - t0
    pieces_per_split = {k: sum(1 for r in ok if r["split"] == k) for k in splits}

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in records:
        w.writerow({k: r.get(k, "") for k in MANIFEST_FIELDS})
    write_text_atomic(out_dir / "manifest.csv", buf.getvalue())
    codec.save(out_dir / "tokenizer.json")
    played = [r for r in ok if r.get("written_tokens")]
    repeats = {"expanded": len(played), "failed": sum(1 for r in ok if str(r.get("repeats", "")).startswith("failed")),
               "tokens_written": sum(int(r["written_tokens"]) for r in played),
               "tokens_played": sum(int(r["tokens"]) for r in played)}
    repeats["tokens_added"] = repeats["tokens_played"] - repeats["tokens_written"]
    summary = BuildSummary(out_dir, len(ok), len(skipped), len(dups), {k: int(v.size) for k, v in arrays.items()},
                           pieces_per_split, seconds, codec.vocab_size,
                           round(tokens_total / max(notes_total, 1), 3),
                           repeats if any(r.get("repeats") for r in ok) else None)
    log = [f"{r['id']}: {r['status']}: {r['reason']}" for r in skipped + dups] + summary.lines()
    write_text_atomic(out_dir / "build.log", "\n".join(log) + "\n")
    write_dataset(out_dir, arrays, codec.vocab_size, modality="music",
                  tokenizer="tokenizer.json", manifest="manifest.csv",
                  separator={"bos": codec.bos_id, "eos": codec.eos_id, "pad": codec.pad_id},
                  prefix=["BOS", "style", "key", "tempo", "time_signature"],
                  controls={"slots": ["valence", "energy"], "segment_bars": codec.config.segment_bars,
                            "valence_edges": list(codec.config.valence_edges),
                            "energy_edges": list(codec.config.energy_edges)},
                  tokens_per_note=round(tokens_total / max(notes_total, 1), 3),
                  pieces={"ok": len(ok), "skipped": len(skipped), "duplicate": len(dups),
                          "excluded": sum(1 for r in records if r["status"] == "excluded"), **{
                      f"{k}": v for k, v in pieces_per_split.items()}},
                  collections=per_coll, split_fractions={"val": val_fraction, "test": test_fraction},
                  build_seconds=round(seconds, 1), repeats_played=summary.repeats, **source_info)
    return summary
