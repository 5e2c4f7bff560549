"""The beat grid: where beat b falls in time, and following a player's tempo.

``BeatClock`` maps beats to seconds: ``time(b) = origin + b * period``. Fixed, it keeps the
tempo it was given. Following, it keeps the player's onsets of the last ``WINDOW`` beats and
after each one:

1. finds the period that puts the onsets best on a grid of eighths: over every pair of
   onsets at most 4 beats apart, how close their distance is to a whole number of eighths
   (a Gaussian of ``SIGMA_S`` seconds), for periods within ``MAX_START`` of the starting tempo
   (within ``MAX_STEP`` of the current one once following) in steps of 0.25%;
2. places each onset on that grid, counted from the oldest onset kept (whose beat is
   known), and refits origin and period by least squares over those placed on an eighth.

The grid follows the fit once the placed onsets span ``follow_after`` beats (4 by default).
With a steady player, +-20 ms of jitter and a starting tempo 10% off, the tempo is within
about 1% after 8 beats (tests/test_live.py). The grid only moves forward: ``commit(b)`` says
beat b's events are sent; a later refit never puts a later beat less than half a beat per
beat after it.
"""

from __future__ import annotations

import numpy as np

WINDOW = 16          # beats of onsets a refit uses
SIGMA_S = 0.025      # seconds: how far from the grid an onset may stray and still count fully
MAX_START = 0.25     # the player's tempo is at most 25% away from the starting one
MAX_STEP = 0.10      # once following, the period moves at most 10% from one onset to the next
PAIR_BEATS = 4.0     # onset pairs further apart than this say little about the period


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
            self.times, self.beats = [float(t)], [round(2 * x) / 2]
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
        half = cands[:, None] / 2
        off = d[None, :] - np.round(d[None, :] / half) * half           # seconds from the nearest eighth
        score = np.exp(-0.5 * (off / SIGMA_S) ** 2).sum(1)
        return float(cands[int(np.argmax(score))])

    def _refit(self) -> None:
        times = np.asarray(self.times)
        period = self._best_period(times)
        b0, t0 = self.beats[0], times[0]
        x = b0 + (times - t0) / period
        g = np.round(2 * x) / 2
        on = np.abs(x - g) * period <= 2 * SIGMA_S
        g[0] = b0
        self.beats = [float(v) if ok else float("nan") for v, ok in zip(g, on)]
        gb, gt = g[on], times[on]
        if len(gb) < 2 or gb.max() - gb.min() <= 0:
            return
        slope, intercept = np.polyfit(gb, gt, 1)
        ref = self.period if self.following else self.start_period
        span = MAX_STEP if self.following else MAX_START
        if not (ref * (1 - span) <= slope <= ref * (1 + span)):
            return
        if self.following or gb.max() - gb.min() >= self.follow_after:
            self.following = True
            self.period, self.origin = float(slope), float(intercept)
