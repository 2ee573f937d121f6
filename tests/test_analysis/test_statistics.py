"""compare's statistics equal rliable's (the reference implementation) on the same score matrices, seed and
resample count; the IQM equals scipy's trimmed mean; the bootstrap interval covers a known mean about as often
as it says; too few runs give no interval."""

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from rliable import library as rly
from rliable import metrics

from townlet.analysis import statistics as stats

RNG = np.random.RandomState(2026)
#: Score matrices shaped like compare's: one score per run, groups of a few to twenty runs.
GROUPS = {n: RNG.normal(150.0, 25.0, n) for n in (3, 5, 8, 20)}


@pytest.mark.parametrize("n", sorted(GROUPS))
def test_iqm_and_its_interval_equal_rliables(n):
    scores = GROUPS[n]
    np.random.seed(11)  # rliable resamples with numpy's global generator
    point, interval = rly.get_interval_estimates(
        {"x": scores[:, None]}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=4000
    )
    ours = stats.iqm_interval(scores, reps=4000, seed=11)
    assert ours.estimate == pytest.approx(point["x"][0], rel=1e-12)
    assert (ours.low, ours.high) == pytest.approx(tuple(interval["x"].ravel()), rel=1e-12)


@pytest.mark.parametrize(("nx", "ny"), [(5, 5), (8, 5), (3, 20)])
def test_probability_of_improvement_and_its_interval_equal_rliables(nx, ny):
    x, y = GROUPS[nx] + 10.0, GROUPS[ny]
    np.random.seed(5)
    point, interval = rly.get_interval_estimates(
        {"xy": [x[:, None], y[:, None]]}, metrics.probability_of_improvement, reps=2000
    )
    ours = stats.improvement_interval(x, y, reps=2000, seed=5)
    assert ours.estimate == pytest.approx(point["xy"], rel=1e-12)
    assert (ours.low, ours.high) == pytest.approx(tuple(interval["xy"].ravel()), rel=1e-12)


def test_performance_profile_and_its_interval_equal_rliables():
    scores = GROUPS[8]
    taus = np.linspace(90.0, 210.0, 9)
    np.random.seed(3)
    profiles, intervals = rly.create_performance_profile({"x": scores[:, None]}, taus)  # rliable: 2,000 reps
    ours = stats.profile_interval(scores, taus, seed=3)
    assert [p.estimate for p in ours] == pytest.approx(list(profiles["x"]))
    assert [p.low for p in ours] == pytest.approx(list(intervals["x"][0]))
    assert [p.high for p in ours] == pytest.approx(list(intervals["x"][1]))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=40))
def test_iqm_is_scipys_25_percent_trimmed_mean(values):
    assert stats.iqm(np.array(values)) == pytest.approx(scipy.stats.trim_mean(values, 0.25), rel=1e-9, abs=1e-6)


@settings(max_examples=4, deadline=None, derandomize=True)
@given(mean=st.floats(-100.0, 100.0), scale=st.floats(0.5, 50.0), seed=st.integers(0, 2**16))
def test_the_interval_covers_a_known_centre_about_95_percent_of_the_time(mean, scale, seed):
    """Synthetic runs from a symmetric distribution whose IQM estimand is its mean: over 200 experiments of
    20 runs each, the 95 % interval holds the true centre in roughly 95 % of them (percentile intervals of
    small samples run a little narrow: 88-99 % is what the method gives here)."""
    rng = np.random.RandomState(seed)
    hits = 0
    for trial in range(200):
        runs = rng.normal(mean, scale, 20)
        interval = stats.iqm_interval(runs, reps=1000, seed=trial)
        hits += interval.low <= mean <= interval.high
    assert 0.88 <= hits / 200 <= 0.99


def test_the_same_seed_gives_the_same_bounds_and_another_seed_other_bounds():
    scores = GROUPS[20]
    first, again = stats.iqm_interval(scores, reps=3000, seed=1), stats.iqm_interval(scores, reps=3000, seed=1)
    other = stats.iqm_interval(scores, reps=3000, seed=2)
    assert first == again and (first.low, first.high) != (other.low, other.high)


def test_too_few_runs_give_no_interval_never_a_fake_one():
    for n in range(1, stats.MIN_RUNS_FOR_INTERVAL):
        scores = np.arange(float(n))
        assert stats.iqm_interval(scores, reps=100).low is None
        assert stats.improvement_interval(scores, scores + 1, reps=100).high is None
        assert all(p.low is None for p in stats.profile_interval(scores, [0.5], reps=100))
    assert stats.iqm_interval(np.arange(3.0), reps=100).low is not None


def test_a_curve_band_is_each_columns_own_interval():
    curves = np.stack([GROUPS[8] + step for step in range(4)], axis=1)  # runs x points
    band = stats.iqm_intervals_by_column(curves, reps=2000, seed=9)
    assert [b.estimate for b in band] == pytest.approx([stats.iqm(curves[:, i]) for i in range(4)])
    assert band[2] == stats.iqm_interval(curves[:, 2], reps=2000, seed=9)


@pytest.mark.parametrize(("nx", "ny"), [(3, 4), (8, 5), (17, 3), (4, 16)])
def test_unequal_groups_draw_the_indices_one_call_per_group_and_resample_would(nx, ny):
    """The bulk split of the raw stream gives exactly what two ``randint`` calls per resample give (rliable's
    ``np.random.choice`` for X, then for Y), powers of two included (no draw is rejected there)."""
    rng = np.random.RandomState(7)
    expected = [(rng.randint(0, nx, size=nx), rng.randint(0, ny, size=ny)) for _ in range(3000)]
    xi, yi = stats._paired_indices(nx, ny, 3000, 7)
    assert np.array_equal(xi, np.stack([x for x, _ in expected]))
    assert np.array_equal(yi, np.stack([y for _, y in expected]))
