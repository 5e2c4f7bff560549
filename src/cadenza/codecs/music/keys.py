"""Key finding: Krumhansl-Kessler profiles correlated with a pitch-class histogram."""

from __future__ import annotations

import numpy as np

# Krumhansl-Kessler key profiles (major, minor), tonic first.
_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def _key_profiles() -> np.ndarray:
    rows = [np.roll(prof, tonic) for prof in (_KK_MAJOR, _KK_MINOR) for tonic in range(12)]
    m = np.array(rows)
    m = m - m.mean(axis=1, keepdims=True)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


_PROFILES = _key_profiles()  # (24, 12), centred and normalised: a dot product is a correlation


def key_correlations(pitches, weights) -> np.ndarray:
    """Correlation of the duration-weighted pitch-class histogram with the 24 key profiles
    (0-11 major on C..B, 12-23 minor); all -1 when the histogram is flat or empty."""
    hist = np.bincount(np.asarray(pitches, dtype=np.int64) % 12, weights=np.asarray(weights, dtype=float),
                       minlength=12)
    hist = hist - hist.mean()
    norm = np.linalg.norm(hist)
    if norm == 0:
        return np.full(24, -1.0)
    return _PROFILES @ (hist / norm)
