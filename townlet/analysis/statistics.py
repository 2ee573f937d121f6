"""The statistics ``compare`` reports, as RL papers must (Agarwal et al. 2021, the ``rliable`` library).

One score per run: the run (seed) is the unit of replication, never an episode or an agent inside a run.

- ``iqm``: the interquartile mean, the 25 % trimmed mean (``scipy.stats.trim_mean(x, 0.25)``: ``int(0.25 n)``
  scores cut from each end).
- ``iqm_interval``: a 95 % percentile confidence interval by stratified bootstrap over runs: ``reps``
  resamples of the group's runs with replacement, the IQM of each, their 2.5th and 97.5th percentiles
  (``numpy.percentile``, linear). With one score per run the strata are the runs themselves.
- ``profile_interval``: the performance profile, the fraction of runs scoring above each threshold, with
  the same bootstrap (rliable's default for profiles: 2,000 resamples).
- ``improvement_interval``: P(X > Y), the probability that a run of X scores above a run of Y (ties count
  half: the Mann-Whitney U statistic over nx x ny), with X and Y resampled independently.

Reproducible: each interval draws from its own ``numpy.random.RandomState(seed)``, in the order rliable draws
from numpy's global generator (``np.random.choice`` per resample: X's indices, then Y's). So two readers get
the same bounds, and ``rliable`` given ``np.random.seed(seed)`` first gives them too (the oracle tests).
Intervals need at least ``MIN_RUNS_FOR_INTERVAL`` runs in each group; fewer is said, never faked.
"""

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from townlet import defaults

#: rliable's defaults (kept in ``townlet.defaults`` so the CLI's --help needs no numpy): resamples for an interval
#: and for a performance profile, the coverage; the fixed seed every interval starts from unless told otherwise
#: (``compare --bootstrap-seed``); fewer runs than ``MIN_RUNS_FOR_INTERVAL`` in a group: no interval (a
#: bootstrap of 2 runs has only 3 distinct resamples' IQMs).
DEFAULT_REPS = defaults.BOOTSTRAP_REPS
PROFILE_REPS = defaults.PROFILE_REPS
CONFIDENCE = defaults.CONFIDENCE
MIN_RUNS_FOR_INTERVAL = defaults.MIN_RUNS_FOR_INTERVAL
DEFAULT_SEED = defaults.BOOTSTRAP_SEED

Scores = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Interval:
    """A point estimate and its confidence bounds (``None`` bounds: too few runs for an interval)."""

    estimate: float
    low: float | None
    high: float | None


def iqm(scores: Scores) -> float:
    """The 25 % trimmed mean of ``scores`` (1-D)."""
    return float(_trimmed_means(np.sort(np.asarray(scores, dtype=np.float64))[None, :])[0])


def _trimmed_means(sorted_rows: Scores) -> Scores:
    """Each row's 25 % trimmed mean; rows already sorted ascending."""
    n = sorted_rows.shape[1]
    cut = int(0.25 * n)
    return sorted_rows[:, cut : n - cut].mean(axis=1)


def resample_indices(n: int, reps: int, seed: int) -> NDArray[np.int64]:
    """``reps`` resamples of ``n`` runs, as rliable draws them (``np.random.choice(n, (n, 1))`` each)."""
    return np.random.RandomState(seed).randint(0, n, size=(reps, n))


def _bounds(values: Scores, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2
    low, high = np.percentile(values, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def iqm_interval(
    scores: Scores, *, reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED, confidence: float = CONFIDENCE
) -> Interval:
    """The IQM of one group's run scores with its stratified-bootstrap percentile interval."""
    x = np.asarray(scores, dtype=np.float64)
    estimate = iqm(x)
    if len(x) < MIN_RUNS_FOR_INTERVAL:
        return Interval(estimate, None, None)
    samples = np.sort(x[resample_indices(len(x), reps, seed)], axis=1)
    return Interval(estimate, *_bounds(_trimmed_means(samples), confidence))


def iqm_intervals_by_column(
    scores: Scores, *, reps: int, seed: int = DEFAULT_SEED, confidence: float = CONFIDENCE
) -> list[Interval]:
    """For a (runs x points) matrix (a learning curve per run): each point's IQM over runs with its interval,
    every point resampled with the same run indices (one curve's band)."""
    matrix = np.asarray(scores, dtype=np.float64)
    n, points = matrix.shape
    indices = resample_indices(n, reps, seed) if n >= MIN_RUNS_FOR_INTERVAL else None
    found = []
    for column in range(points):
        x = matrix[:, column]
        estimate = iqm(x)
        if indices is None:
            found.append(Interval(estimate, None, None))
            continue
        found.append(Interval(estimate, *_bounds(_trimmed_means(np.sort(x[indices], axis=1)), confidence)))
    return found


def profile(scores: Scores, thresholds: Scores) -> Scores:
    """The fraction of ``scores`` above each threshold."""
    x = np.asarray(scores, dtype=np.float64)
    return (x[None, :] > np.asarray(thresholds, dtype=np.float64)[:, None]).mean(axis=1)


def profile_interval(
    scores: Scores,
    thresholds: Scores,
    *,
    reps: int = PROFILE_REPS,
    seed: int = DEFAULT_SEED,
    confidence: float = CONFIDENCE,
) -> list[Interval]:
    """The performance profile at each threshold with its bootstrap interval."""
    x = np.asarray(scores, dtype=np.float64)
    taus = np.asarray(thresholds, dtype=np.float64)
    point = profile(x, taus)
    if len(x) < MIN_RUNS_FOR_INTERVAL:
        return [Interval(float(p), None, None) for p in point]
    samples = x[resample_indices(len(x), reps, seed)]  # reps x n
    fractions = (samples[:, None, :] > taus[None, :, None]).mean(axis=2)  # reps x thresholds
    return [Interval(float(p), *_bounds(fractions[:, i], confidence)) for i, p in enumerate(point)]


def probability_of_improvement(x: Scores, y: Scores) -> float:
    """P(X > Y) over every pair of runs, ties counted half."""
    return float(_improvements(np.asarray(x, dtype=np.float64)[None, :], np.asarray(y, dtype=np.float64)[None, :])[0])


def _improvements(xs: Scores, ys: Scores) -> Scores:
    """Row by row: P(X > Y) of resampled X rows against resampled Y rows."""
    greater = (xs[:, :, None] > ys[:, None, :]).mean(axis=(1, 2))
    ties = (xs[:, :, None] == ys[:, None, :]).mean(axis=(1, 2))
    return greater + 0.5 * ties


def improvement_interval(
    x: Scores, y: Scores, *, reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED, confidence: float = CONFIDENCE
) -> Interval:
    """P(X > Y) with its bootstrap interval, X's and Y's runs resampled independently (rliable's order)."""
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    estimate = probability_of_improvement(xa, ya)
    if min(len(xa), len(ya)) < MIN_RUNS_FOR_INTERVAL:
        return Interval(estimate, None, None)
    xi, yi = _paired_indices(len(xa), len(ya), reps, seed)
    values = np.concatenate([_improvements(xa[xi[i : i + 5000]], ya[yi[i : i + 5000]]) for i in range(0, reps, 5000)])
    return Interval(estimate, *_bounds(values, confidence))


def _paired_indices(nx: int, ny: int, reps: int, seed: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Per resample, X's indices then Y's, as ``RandomState(seed)`` gives them to rliable's two
    ``np.random.choice`` calls a resample (``randint(0, n)``: raw 32-bit draws masked to the next power of two
    above ``n - 1``, a draw over ``n - 1`` rejected).

    One bound (``nx == ny``) is one draw of ``reps x 2n``. Two bounds interleave, so the raw stream is drawn in
    bulk (``randint(0, 2**32)`` takes one raw draw per value) and split without a Python loop per value: the
    position after k accepted draws from any position comes from a cumulative count, and only the walk from
    segment to segment (two steps a resample) is a loop.
    """
    rng = np.random.RandomState(seed)
    if nx == ny:
        both = rng.randint(0, nx, size=(reps, 2 * nx))
        return both[:, :nx], both[:, nx:]
    masks = [(1 << int(n - 1).bit_length()) - 1 for n in (nx, ny)]
    size = int(1.05 * reps * (masks[0] + masks[1] + 2)) + 1024  # draws a resample takes on average: (mask + 1) each
    while True:
        raw = rng.randint(0, 2**32, size=size, dtype=np.uint64)
        found = _split(raw, (nx, ny), masks, reps)
        if found is not None:
            return found
        size *= 2  # an unlucky stream ran short: the same stream again from the seed, longer
        rng = np.random.RandomState(seed)


def _split(
    raw: NDArray[np.uint64], sizes: tuple[int, int], masks: list[int], reps: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]] | None:
    values, ends, walks, accepted = [], [], [], []
    for n, mask in zip(sizes, masks, strict=True):
        masked = (raw & np.uint64(mask)).astype(np.int64)
        ok = masked <= n - 1
        counts = np.concatenate([[0], np.cumsum(ok)])  # counts[p]: accepted draws before position p
        # end[p]: the position just after the n-th accepted draw at or after p (len(raw) + 1 when there is none)
        end = np.searchsorted(counts, counts[:-1] + n, side="left")
        values.append(masked)
        ends.append(np.minimum(end, len(raw) + 1))
        walks.append(ends[-1].tolist())  # the walk indexes one position at a time: a list is faster there
        accepted.append(ok)
    starts = np.empty((2, reps), dtype=np.int64)
    position, limit = 0, len(raw)
    end_x, end_y = walks
    for rep in range(reps):
        if position >= limit:
            return None
        starts[0, rep] = position
        position = end_x[position]
        if position >= limit:
            return None
        starts[1, rep] = position
        position = end_y[position]
        if position > limit:
            return None
    found = []
    for which, (n, masked, ok) in enumerate(zip(sizes, values, accepted, strict=True)):
        inside = np.zeros(len(raw) + 1, dtype=np.int64)
        np.add.at(inside, starts[which], 1)
        stops = ends[which][starts[which]]
        np.add.at(inside, stops, -1)
        chosen = (np.cumsum(inside)[:-1] > 0) & ok
        found.append(masked[chosen].reshape(reps, n))
    return found[0], found[1]
