"""The beat grid: where beat b falls in time, and following a player's tempo.

``BeatClock`` maps beats to seconds: ``time(b) = origin + b * period``. Fixed, it keeps the
tempo it was given. Following, it keeps the player's onsets of the last ``WINDOW`` beats and
after each one:

1. finds the period that puts the onsets best on a grid of eighths: over every pair of
   onsets at most 4 beats apart, how close their distance is to a whole number of eighths
   (a Gaussian of ``SIGMA_S`` seconds, less what onsets at random would score, so a finer
   grid (a faster tempo) gains nothing by being fine), for periods within ``MAX_START`` of
   the starting tempo (within ``MAX_STEP`` of the current one once following), in steps of
   0.25%;
2. places each onset on that grid, counted from the oldest onset kept (whose beat is
   known); onsets further from an eighth than a fifth of one (sixteenths, triplets) are left
   out; it fits origin and period by least squares, then once more without the onsets the
   line misses by more than ``SIGMA_S``.

The grid follows the fit once the placed onsets span ``follow_after`` beats (4 by default),
there are ``MIN_ONSETS`` of them and the line misses them by at most ``RMS_S`` (root mean
square); until then it keeps the starting tempo.
With a steady player, +-20 ms of jitter, rhythms of quarters to sixteenths at 60-180 bpm and
a starting tempo up to 20% off, the tempo is within 1% from 8 beats on (tests/test_live.py).
The grid only moves forward and smoothly: ``commit(b)`` says beat b's events are sent; a
refit then moves beat b + 1 by at most ``MAX_SHIFT`` of a beat, and never puts a later beat
less than half a beat per beat after beat b.
"""

from __future__ import annotations

import numpy as np

WINDOW = 16          # beats of onsets a refit uses
SIGMA_S = 0.025      # seconds: how far from the grid an onset may stray and still count fully
MAX_START = 0.25     # the player's tempo is at most 25% away from the starting one
MAX_STEP = 0.04      # once following, the period moves at most 4% from one onset to the next
GRID = 2             # onsets are placed on eighths of a quarter-note beat
PAIR_BEATS = 4.0     # onset pairs further apart than this say little about the period
MIN_ONSETS = 6       # placed onsets needed before the grid follows
MAX_SHIFT = 0.05     # once a beat is sent, one refit moves the next one by at most this much of a beat
RMS_S = 0.02         # ... and the most the fitted line may miss them by (root mean square, seconds)


class BeatClock:
    def __init__(self, tempo: float, origin: float | None = None, follow: bool = True, follow_after: int = 4):
        self.period = 60.0 / float(tempo)
        self.start_period = self.period
        self.origin = None if origin is None else float(origin)   # time of beat 0 (None: the first onset)
        self.follow = bool(follow)
        self.follow_after = int(follow_after)
        self.times: list[float] = []          # the player's onsets in the window
        self.beats: list[float] = []          # and where each was placed (eighths) at its last refit
        self.following = False                # the grid now comes from the player
        self._committed: tuple[int, float] | None = None

    @property
    def started(self) -> bool:
        return self.origin is not None

    @property
    def tempo(self) -> float:
        return 60.0 / self.period

    def start(self, origin: float) -> None:
        self.origin = float(origin)

    def time(self, beat: float) -> float:
        """When ``beat`` falls (seconds)."""
        t = self.origin + beat * self.period
        if self._committed is not None and beat > self._committed[0]:
            b0, t0 = self._committed
            t = max(t, t0 + 0.5 * self.period * (beat - b0))
        return t

    def beat(self, t: float) -> float:
        """The (fractional) beat at time ``t``."""
        return (t - self.origin) / self.period

    def commit(self, beat: int) -> None:
        """Beat ``beat``'s events are sent at ``time(beat)``."""
        self._committed = (int(beat), self.time(beat))

    def onset(self, t: float) -> float:
        """Take a player's onset at ``t``; returns its beat on the grid before any refit."""
        if self.origin is None:
            self.origin = float(t)
        x = self.beat(t)
        if not self.follow or (self.times and t <= self.times[-1]):
            return x
        if not self.times:
            self.times, self.beats = [float(t)], [round(GRID * x) / GRID]
            return x
        self.times.append(float(t))
        self.beats.append(float("nan"))
        keep = [i for i, u in enumerate(self.times) if t - u <= WINDOW * self.period]
        keep = keep[-48:]
        self.times = [self.times[i] for i in keep]
        self.beats = [self.beats[i] for i in keep]
        self._refit()
        return x

    def _best_period(self, times: np.ndarray) -> float:
        ref = self.period if self.following else self.start_period
        span = MAX_STEP if self.following else MAX_START
        cands = ref * np.exp(np.arange(np.log(1 - span), np.log(1 + span), 0.0025))
        d = times[None, :] - times[:, None]
        d = d[(d > 0) & (d <= PAIR_BEATS * ref * (1 + span))]
        if d.size == 0:
            return self.period
        step = cands[:, None] / GRID
        off = d[None, :] - np.round(d[None, :] / step) * step           # seconds from the nearest eighth
        score = np.exp(-0.5 * (off / SIGMA_S) ** 2).mean(1)
        score -= np.sqrt(2 * np.pi) * SIGMA_S / step[:, 0]      # what onsets anywhere would score: a finer grid
        return float(cands[int(np.argmax(score))])               # (a faster tempo) is not better for that

    def _refit(self) -> None:
        times = np.asarray(self.times)
        period = self._best_period(times)
        b0, t0 = self.beats[0], times[0]
        x = b0 + (times - t0) / period
        g = np.round(GRID * x) / GRID
        on = np.abs(x - g) * period <= min(2 * SIGMA_S, 0.2 * period / GRID)
        on[0] = True
        g[0] = b0
        self.beats = [float(v) if ok else float("nan") for v, ok in zip(g, on)]
        gb, gt = g[on], times[on]
        if len(gb) < 2 or gb.max() - gb.min() <= 0:
            return
        slope, intercept = np.polyfit(gb, gt, 1)
        resid = np.abs(gt - (intercept + slope * gb))
        keep = resid <= SIGMA_S                    # once more without the onsets the line leaves far off
        if len(gb) >= 4 and 2 <= keep.sum() < len(gb) and np.ptp(gb[keep]) > 0:
            slope, intercept = np.polyfit(gb[keep], gt[keep], 1)
        ref = self.period if self.following else self.start_period
        span = MAX_STEP if self.following else MAX_START
        if not (ref * (1 - span) <= slope <= ref * (1 + span)):
            return
        if not self.following:     # enough evidence first: the span, the onsets, and a line that fits them
            rms = float(np.sqrt(np.mean((gt - (intercept + slope * gb)) ** 2)))
            if gb.max() - gb.min() < self.follow_after or len(gb) < MIN_ONSETS or rms > RMS_S:
                return
        self.following = True
        if self._committed is not None:     # the next beat moves by at most MAX_SHIFT of a beat per onset
            b1 = self._committed[0] + 1
            was = self.time(b1)
            shift = max(-MAX_SHIFT * slope, min(MAX_SHIFT * slope, intercept + slope * b1 - was))
            intercept = was + shift - slope * b1
        self.period, self.origin = float(slope), float(intercept)
