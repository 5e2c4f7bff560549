"""Does the music model follow its controls? The checks (measures: ``control_measures``).

``run_checks`` composes pieces with forced controls (the way ``compose`` does by default:
grammar, top-p 0.95, int8 decoding; at exactly the bars asked for, ``ending=False``, so the
halves compare like for like) and tests the targets of issue 10's "Controls followed":
a forced key keeps >= 90% of notes in its scale; forced energy high vs low gives >= 2x the
notes per bar; forced valence high vs low raises the major-third share; and a control
switched mid-piece shows its change from the segment after the switch. The same seeds are
used for the low and high version of a control, so each pair shares its prefix (style, key,
tempo, metre are sampled before the first Mood token) and differs only by the control.
"""

from __future__ import annotations

from cadenza.errors import ConfigError
from cadenza.music.eval.control_measures import (bar_counts, key_share, major_third_share, mean_or_none, median_or_none,
                                                  notes_of, notes_per_bar, ratio_or_none, segment_notes_per_bar,
                                                  third_counts)

KEYS = ("C", "G", "D", "F", "Am", "Em", "Dm")
LOW, HIGH = 0.1, 0.9
KEY_TARGET = 0.90            # share of notes in the forced key's scale (mean over seeds)
ENERGY_TARGET = 2.0          # notes per bar, high energy / low energy
SWITCH_ENERGY_TARGET = 1.5   # notes per bar after / before a switch (before / after for a switch down)


# --------------------------------------------------------------------------- composing and checking
def piece_moods(mm, piece) -> list[tuple[int, int, int]]:
    """The Mood tokens a piece holds: [(0-based bar, valence level, energy level)]."""
    from cadenza.music.inputs import remi_for
    from cadenza.music.grammar import RemiState

    return list(RemiState(remi_for(mm.codec), record=True).feed_all(piece.ids).moods)


def expected_moods(codec, n_bars: int, valence=None, energy=None) -> list[tuple[int, int | None, int | None]]:
    """The levels a plan forces at each segment: [(0-based first bar, valence, energy)], None where free."""
    from cadenza.music.controls import MoodPlan

    plan = MoodPlan.make(valence=valence, energy=energy)
    S = int(codec.config.segment_bars)
    return [(b, *plan.levels_at(codec, b + 1)) for b in range(0, n_bars, S)]


def moods_follow(found, expected) -> bool:
    """Every segment has its Mood token and each forced level is the one written."""
    if len(found) != len(expected):
        return False
    for (b, v, e), (b2, v2, e2) in zip(found, expected):
        if b != b2 or (v2 is not None and v != v2) or (e2 is not None and e != e2):
            return False
    return True


def switch_bar(n_bars: int, segment_bars: int) -> int:
    """Where the mid-piece switch goes: the first segment start at or after the middle bar
    (bar 9 of 16, bar 5 of 8, with 4-bar segments)."""
    S = int(segment_bars)
    half = n_bars // 2
    return -(-half // S) * S + 1


def _pieces(mm, seeds, bars, style, switch):
    """The compositions of ``run_checks``: (case, seed, compose settings) in order."""
    lo, hi = LOW, HIGH
    jobs = []
    for k, seed in enumerate(seeds):
        jobs.append(("key", seed, {"key": KEYS[k % len(KEYS)]}))
    for seed in seeds:     # the baseline: nothing forced
        jobs.append(("free", seed, {}))
    for name, ctl in (("energy", "energy"), ("valence", "valence")):
        for level, v in (("low", lo), ("high", hi)):
            for seed in seeds:
                jobs.append((f"{name}_{level}", seed, {ctl: v}))
    for case, ctl, plan in (("switch_energy_up", "energy", f"{lo},{hi}@{switch}"),
                            ("switch_energy_down", "energy", f"{hi},{lo}@{switch}"),
                            ("switch_valence_up", "valence", f"{lo},{hi}@{switch}")):
        for seed in seeds:
            jobs.append((case, seed, {ctl: plan}))
    return [(c, s, dict(kw, style=style, bars=bars)) for c, s, kw in jobs]


def measure_piece(mm, piece, settings: dict, switch: int | None = None, ref_key=None) -> dict:
    """Every number ``run_checks`` keeps about one composed piece (``ref_key``: a key to
    measure the share of notes in when none was forced)."""
    n = notes_of(piece)
    found = piece_moods(mm, piece)
    exp = expected_moods(mm.codec, piece.bars, settings.get("valence"), settings.get("energy"))
    S = int(mm.codec.config.segment_bars)
    row = {
        "bars": int(piece.bars), "notes": len(n), "conditioning": piece.conditioning,
        "notes_per_bar": notes_per_bar(n), "bar_counts": bar_counts(n).tolist(),
        "segment_notes_per_bar": segment_notes_per_bar(n, S),
        "major_third_share": major_third_share(n), "thirds": third_counts(n),
        "segment_major_third_share": [major_third_share(n, (b, min(b + S - 1, piece.bars)))
                                      for b in range(1, piece.bars + 1, S)],
        "moods": [list(m) for m in found], "expected_moods": [list(m) for m in exp],
        "moods_follow": moods_follow(found, exp), "stopped": piece.stopped,
    }
    key = settings.get("key") or ref_key
    if key is not None:
        row["key"] = key
        row["key_share"] = key_share(n, key)
    if switch is not None:
        before, after = (1, switch - 1), (switch, piece.bars)
        row["switch_bar"] = switch
        row["notes_per_bar_before"] = notes_per_bar(n, before)
        row["notes_per_bar_after"] = notes_per_bar(n, after)
        row["major_third_share_before"] = major_third_share(n, before)
        row["major_third_share_after"] = major_third_share(n, after)
        # the segments either side of the switch only
        row["notes_per_bar_segment_before"] = notes_per_bar(n, (max(1, switch - S), switch - 1))
        row["notes_per_bar_segment_after"] = notes_per_bar(n, (switch, min(piece.bars, switch + S - 1)))
    return row


def run_checks(mm, seeds, bars: int = 16, style=None, progress: bool = True, temperature: float = 1.0,
               top_p: float | None = 0.95) -> dict:
    """Compose with forced controls and test the targets (see the module docstring).

    Per seed (``seeds``, a list of ints): a piece in a forced key (``KEYS`` in turn; tempo,
    metre and moods chosen by the model); the baseline, a piece with nothing forced ("free",
    measured against the same key: what the key share is without the control); pieces with energy 0.1 and 0.9, and valence 0.1
    and 0.9 (the other control free); and switches at ``switch_bar(bars)`` (bar 9 of 16):
    energy low->high and high->low, valence low->high. ``bars`` pieces each, ``style`` for
    all (None: the model chooses). Returns {"settings", "pieces": {case: [row per seed]},
    "summary": {...}, "targets": [{"target", "value", "met"}], "moods_follow": bool}.
    """
    from tqdm import tqdm

    from cadenza.music.composition import compose

    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("run_checks needs at least one seed")
    S = int(mm.codec.config.segment_bars)
    if isinstance(bars, bool) or not isinstance(bars, int) or bars < 2 * S:
        raise ConfigError(f"the control checks need pieces of at least {2 * S} bars (two {S}-bar segments), "
                          f"not {bars!r}")
    switch = switch_bar(bars, S)
    jobs = _pieces(mm, seeds, bars, style, switch)
    key_of = {s: KEYS[k % len(KEYS)] for k, s in enumerate(seeds)}
    pieces: dict[str, list] = {}
    with tqdm(total=len(jobs), desc="control checks", unit="piece", disable=not progress,
              dynamic_ncols=True) as bar:
        for case, seed, kw in jobs:
            bar.set_postfix_str(f"{case} seed {seed}", refresh=False)
            piece = compose(mm, seed=seed, temperature=temperature, top_p=top_p, ending=False, **kw)
            ref = key_of[seed] if case == "free" else None
            row = measure_piece(mm, piece, kw, switch if case.startswith("switch") else None, ref_key=ref)
            row["seed"] = seed
            pieces.setdefault(case, []).append(row)
            bar.update(1)
    summary, targets = summarize(pieces)
    return {"settings": {"seeds": seeds, "bars": bars, "style": style, "switch_bar": switch, "low": LOW,
                         "high": HIGH, "keys": list(KEYS), "temperature": temperature, "top_p": top_p,
                         "segment_bars": S, "decode_weights": mm.network.decode_weights},
            "pieces": pieces, "summary": summary, "targets": targets,
            "moods_follow": all(r["moods_follow"] for rows in pieces.values() for r in rows)}


def summarize(pieces: dict) -> tuple[dict, list]:
    """Means / medians over seeds and the targets, from ``run_checks``'s per-piece rows."""
    def col(case, k):
        return [r.get(k) for r in pieces.get(case, [])]

    s: dict = {}
    key_rows = pieces.get("key", [])
    s["key_share_mean"] = mean_or_none(col("key", "key_share"))
    s["key_share_median"] = median_or_none(col("key", "key_share"))
    s["key_share_min"] = min((x for x in col("key", "key_share") if x is not None), default=None)
    s["free_key_share_mean"] = mean_or_none(col("free", "key_share"))
    s["free_notes_per_bar_mean"] = mean_or_none(col("free", "notes_per_bar"))
    s["free_major_third_share_mean"] = mean_or_none(col("free", "major_third_share"))
    s["key_share_by_key"] = {k: mean_or_none([r["key_share"] for r in key_rows if r["key"] == k])
                             for k in dict.fromkeys(r["key"] for r in key_rows)}
    for case in ("energy_low", "energy_high", "valence_low", "valence_high"):
        s[f"{case}_notes_per_bar_mean"] = mean_or_none(col(case, "notes_per_bar"))
        s[f"{case}_notes_per_bar_median"] = median_or_none(col(case, "notes_per_bar"))
        s[f"{case}_major_third_share_mean"] = mean_or_none(col(case, "major_third_share"))
        s[f"{case}_major_third_share_median"] = median_or_none(col(case, "major_third_share"))
    s["energy_ratio"] = ratio_or_none(s["energy_high_notes_per_bar_mean"], s["energy_low_notes_per_bar_mean"])
    s["energy_ratio_median_per_seed"] = median_or_none(
        [ratio_or_none(h, lo) for h, lo in zip(col("energy_high", "notes_per_bar"), col("energy_low", "notes_per_bar"))])
    hv, lv = col("valence_high", "major_third_share"), col("valence_low", "major_third_share")
    s["valence_delta"] = (None if s["valence_high_major_third_share_mean"] is None
                          or s["valence_low_major_third_share_mean"] is None
                          else s["valence_high_major_third_share_mean"] - s["valence_low_major_third_share_mean"])
    pairs = [(h, lo) for h, lo in zip(hv, lv) if h is not None and lo is not None]
    s["valence_seeds_higher"] = f"{sum(h > lo for h, lo in pairs)}/{len(pairs)}"
    for case in ("switch_energy_up", "switch_energy_down", "switch_valence_up"):
        for k in ("notes_per_bar_before", "notes_per_bar_after", "major_third_share_before",
                  "major_third_share_after", "notes_per_bar_segment_before", "notes_per_bar_segment_after"):
            s[f"{case}_{k}_mean"] = mean_or_none(col(case, k))
    up, down = "switch_energy_up", "switch_energy_down"
    s["switch_energy_up_ratio"] = ratio_or_none(s[f"{up}_notes_per_bar_after_mean"], s[f"{up}_notes_per_bar_before_mean"])
    s["switch_energy_down_ratio"] = ratio_or_none(s[f"{down}_notes_per_bar_before_mean"],
                                           s[f"{down}_notes_per_bar_after_mean"])
    s["switch_energy_up_segment_ratio"] = ratio_or_none(s[f"{up}_notes_per_bar_segment_after_mean"],
                                                 s[f"{up}_notes_per_bar_segment_before_mean"])
    s["switch_energy_down_segment_ratio"] = ratio_or_none(s[f"{down}_notes_per_bar_segment_before_mean"],
                                                   s[f"{down}_notes_per_bar_segment_after_mean"])
    vb, va = s["switch_valence_up_major_third_share_before_mean"], s["switch_valence_up_major_third_share_after_mean"]
    s["switch_valence_delta"] = None if vb is None or va is None else va - vb
    s["moods_follow"] = f"{sum(r['moods_follow'] for rows in pieces.values() for r in rows)}/" \
                        f"{sum(len(rows) for rows in pieces.values())}"

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"

    def num(x, f=".2f"):
        return "n/a" if x is None else format(x, f)

    targets = []

    def target(name, value, met):
        targets.append({"target": name, "value": value, "met": bool(met)})

    target(f"forced key: >= {KEY_TARGET:.0%} of notes in its scale (mean over seeds)",
           f"{pct(s['key_share_mean'])} (nothing forced: {pct(s['free_key_share_mean'])})", s["key_share_mean"] is not None and s["key_share_mean"] >= KEY_TARGET)
    er = s["energy_ratio"]
    target(f"energy {HIGH} vs {LOW}: >= {ENERGY_TARGET:g}x the notes per bar",
           f"{num(er)}x ({num(s['energy_high_notes_per_bar_mean'])} vs {num(s['energy_low_notes_per_bar_mean'])})",
           er is not None and er >= ENERGY_TARGET)
    dv = s["valence_delta"]
    target(f"valence {HIGH} vs {LOW}: a higher major-third share",
           f"{pct(s['valence_high_major_third_share_mean'])} vs {pct(s['valence_low_major_third_share_mean'])} "
           f"(higher in {s['valence_seeds_higher']} seeds)", dv is not None and dv > 0)
    for case, ratio, b, a in (("up", s["switch_energy_up_ratio"], s[f"{up}_notes_per_bar_before_mean"],
                               s[f"{up}_notes_per_bar_after_mean"]),
                              ("down", s["switch_energy_down_ratio"], s[f"{down}_notes_per_bar_before_mean"],
                               s[f"{down}_notes_per_bar_after_mean"])):
        arrow = f"{LOW}->{HIGH}" if case == "up" else f"{HIGH}->{LOW}"
        target(f"energy switch {arrow}: >= {SWITCH_ENERGY_TARGET:g}x notes per bar from the switch segment on",
               f"{num(ratio)}x (before {num(b)}, after {num(a)} notes per bar)",
               ratio is not None and ratio >= SWITCH_ENERGY_TARGET)
    sv = s["switch_valence_delta"]
    target(f"valence switch {LOW}->{HIGH}: a higher major-third share from the switch segment on",
           f"{pct(vb)} before, {pct(va)} after", sv is not None and sv > 0)
    n_ok, n_all = (int(x) for x in s["moods_follow"].split("/"))
    target("every segment's Mood token is the forced level", s["moods_follow"], n_all > 0 and n_ok == n_all)
    return s, targets
