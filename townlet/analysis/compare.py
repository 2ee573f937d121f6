"""``compare``: runs grouped by config (or tag), one score per run, and the statistics between the groups.

The one place that builds the comparison: ``compare --json`` prints ``compare_report``'s dict, the dashboard's
``/api/compare`` answers the same bytes, the table and CSV are drawn from it.

A run's score: the chosen metric of each episode (its agents' mean, from the episode's rollup), averaged over
the window: the last ``last`` episodes every selected run has (``--last``), or one episode (``--at``). Runs
are compared at the same training budget, so the window ends at the shortest selected run's last episode.
The learning curve of a group is the IQM over its runs of each bucket of episodes 1 to that episode, with a
bootstrap band; it reads one rollup row per episode, never the agent rows. The per-agent view reads the agent
rows of the window's episodes only.
"""

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from townlet.analysis import statistics as stats
from townlet.analysis.run_selection import BadSelection, RunFilter, config_diff, is_neutral, learning_key
from townlet.audit.baselines import BELOW_BASELINE
from townlet.persistence.flags import KIND
from townlet.persistence.reader import METRIC_SQL, RunSummary, TelemetryReader

#: The version of compare's JSON (``docs/telemetry_schema.md``): bumped when a field changes meaning.
COMPARE_VERSION = 1
METRICS = tuple(METRIC_SQL)
DEFAULT_METRIC = "survival"
#: The default window: the last 20 episodes common to every selected run (four curriculum windows).
DEFAULT_LAST = 20
#: Buckets of a learning curve, and the resamples of its band (rliable's profile count: a band per bucket).
CURVE_POINTS = 40
CURVE_REPS = stats.PROFILE_REPS
#: Thresholds a performance profile is read at: evenly spaced over the scores' range.
PROFILE_THRESHOLDS = 11
GROUP_BY = ("config", "tag")
#: The audit's survival-below-baseline flag, as ``baseline_flags.kind`` stores it.
BELOW_KIND = KIND[BELOW_BASELINE]
QUANTILES = (10, 25, 50, 75, 90)


@dataclass(frozen=True, slots=True)
class CompareOptions:
    """What to compare and how: the selection, the grouping, the score and the bootstrap."""

    runs: tuple[int, ...] = ()
    tags: tuple[str, ...] = ()
    name_like: str | None = None
    where: tuple[str, ...] = ()
    group_by: str = "config"
    metric: str = DEFAULT_METRIC
    last: int | None = None
    at: int | None = None
    reps: int = stats.DEFAULT_REPS
    seed: int = stats.DEFAULT_SEED
    profile: bool = False
    points: int = CURVE_POINTS

    def check(self) -> None:
        if self.metric not in METRICS:
            raise BadSelection(f"no metric {self.metric!r}: choose one of {', '.join(METRICS)}")
        if self.group_by not in GROUP_BY:
            raise BadSelection(f"--group-by takes {' or '.join(GROUP_BY)}, got {self.group_by!r}")
        if self.last is not None and self.at is not None:
            raise BadSelection("--last K and --at EPISODE both choose the window: give one")
        if self.last is not None and self.last < 1:
            raise BadSelection("--last takes at least 1 episode")
        if self.at is not None and self.at < 1:
            raise BadSelection("--at takes an episode number >= 1")
        if self.reps < 1:
            raise BadSelection("--reps takes at least 1 resample (rliable's default: 50000)")
        if self.points < 2:
            raise BadSelection("--points takes at least 2")
        if self.group_by == "tag" and not self.tags:
            raise BadSelection("--group-by tag groups the runs of each --tag given: add --tag A --tag B")


@dataclass
class _Group:
    label: str
    runs: list[RunSummary] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


def compare_report(reader: TelemetryReader, options: CompareOptions) -> dict[str, Any]:
    """The whole comparison as compare's JSON (``COMPARE_VERSION``)."""
    options.check()
    runs, configs = _selected(reader, options)
    groups = _groups(runs, configs, options)
    ids = [run.id for run in runs]
    common = min(run.last_episode or 0 for run in runs)
    if common < 1:
        empty = next(run.id for run in runs if not run.last_episode)
        raise BadSelection(f"run {empty} has no episodes yet: leave it out (give run ids, or --tag)")
    lo, hi, asked = _window(options, common, runs)
    per_episode = reader.episode_scores(ids, options.metric, 1, common)
    missing = [run for run in ids if len(per_episode.get(run, ())) != common]
    if missing:
        raise BadSelection(
            f"run {missing[0]} lacks some of episodes 1-{common} (no common episodes to compare): leave it out"
        )
    series = {run: np.array([value for _, value in per_episode[run]]) for run in ids}
    scores = {run: (float(series[run][lo - 1 : hi].mean()), hi - lo + 1) for run in ids}
    curves = _buckets(series, common, options.points)
    margins = reader.agent_margins(ids, lo, hi)
    below = reader.agents_below_baseline(ids, BELOW_KIND)
    report_groups = [_group_report(group, scores, curves, margins, below, options, i) for i, group in enumerate(groups)]
    if options.profile:
        _add_profiles(report_groups, scores, groups, options.seed)
    return {
        "compare_version": COMPARE_VERSION,
        "metric": options.metric,
        "group_by": options.group_by,
        "window": {
            "first_episode": lo,
            "last_episode": hi,
            "episodes": hi - lo + 1,
            "asked": asked,
            "common_last_episode": common,
        },
        "bootstrap": {
            "method": "percentile interval, stratified bootstrap over runs (rliable)",
            "reps": options.reps,
            "curve_reps": CURVE_REPS,
            "seed": options.seed,
            "confidence": stats.CONFIDENCE,
            "min_runs": stats.MIN_RUNS_FOR_INTERVAL,
        },
        "groups": report_groups,
        "improvement": _improvements(groups, scores, options),
        "config_diff": [
            {"key": key, "values": values}
            for key, values in config_diff([g.config for g in groups])
            if not is_neutral(key)  # a seed or a thread count tells no group from another
        ],
    }


def _selected(reader: TelemetryReader, options: CompareOptions) -> tuple[list[RunSummary], dict[int, dict[str, Any]]]:
    every = reader.runs()
    if not every:
        reader.run()  # the one "no runs yet: train first" message
    configs = reader.run_configs()
    chosen = RunFilter.parse(options.tags, options.name_like, options.where)
    chosen.check(reader.tags(), configs)
    known = {run.id for run in every}
    for run in options.runs:
        if run not in known:
            reader.run(run)  # the one "no run N" refusal
    runs = [
        run
        for run in every
        if (not options.runs or run.id in options.runs) and chosen.selects(run.name, run.tags, configs[run.id])
    ]
    if not runs:
        raise BadSelection("no run matches the selection: list runs with `townlet-telemetry runs` and its filters")
    return runs, configs


def _groups(runs: list[RunSummary], configs: dict[int, dict[str, Any]], options: CompareOptions) -> list[_Group]:
    if options.group_by == "tag":
        groups = [_Group(tag) for tag in options.tags]
        for group in groups:
            group.runs = [run for run in runs if group.label in run.tags]
            if group.runs:
                group.config = configs[group.runs[0].id]
        return [g for g in groups if g.runs]
    by_key: dict[str, _Group] = {}
    for run in runs:
        key = learning_key(configs[run.id], run.device)
        group = by_key.setdefault(key, _Group("", config=configs[run.id]))
        group.runs.append(run)
    found = list(by_key.values())
    for i, group in enumerate(found):
        names = {run.name for run in group.runs}
        shared = set(group.runs[0].tags).intersection(*(set(run.tags) for run in group.runs))
        label = next(iter(names)) if len(names) == 1 and None not in names else None
        group.label = label or (sorted(shared)[0] if shared else f"config {i + 1}")
    return found


def _buckets(series: dict[int, np.ndarray], span: int, points: int) -> dict[int, list[tuple[int, int, float]]]:
    """Each run's episodes 1-``span`` in at most ``points`` consecutive buckets: (first, last episode, mean)."""
    edges = sorted({(b * span) // points for b in range(points)} | {span})
    return {
        run: [(a + 1, b, float(values[a:b].mean())) for a, b in itertools.pairwise(edges)]
        for run, values in series.items()
    }


def _window(options: CompareOptions, common: int, runs: Sequence[RunSummary]) -> tuple[int, int, str]:
    if options.at is not None:
        if options.at > common:
            short = min(runs, key=lambda run: run.last_episode or 0)
            raise BadSelection(
                f"episode {options.at} is beyond run {short.id}'s last episode {short.last_episode}: "
                f"choose --at {common} or less"
            )
        return options.at, options.at, f"at {options.at}"
    last = options.last or DEFAULT_LAST
    return max(1, common - last + 1), common, f"last {last}"


def _summary(values: np.ndarray) -> dict[str, Any]:
    return {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if len(values) > 1 else None,
        "median": float(np.median(values)),
    }


def _interval(interval: stats.Interval) -> list[float] | None:
    return None if interval.low is None else [interval.low, interval.high]


def _too_few(n: int) -> str | None:
    if n >= stats.MIN_RUNS_FOR_INTERVAL:
        return None
    return f"{n} run{'s' if n != 1 else ''}: an interval needs at least {stats.MIN_RUNS_FOR_INTERVAL}"


def _group_report(
    group: _Group,
    scores: dict[int, tuple[float, int]],
    curves: dict[int, list[tuple[int, int, float]]],
    margins: list[tuple[int, int, int, float]],
    below: dict[tuple[int, int], int],
    options: CompareOptions,
    index: int,
) -> dict[str, Any]:
    ids = [run.id for run in group.runs]
    values = np.array([scores[run][0] for run in ids])
    interval = stats.iqm_interval(values, reps=options.reps, seed=options.seed)
    return {
        "label": group.label,
        "runs": ids,
        "seeds": [run.seed for run in group.runs],
        "n": len(ids),
        "scores": [scores[run][0] for run in ids],
        **_summary(values),
        "iqm": interval.estimate,
        "iqm_ci": _interval(interval),
        "note": _too_few(len(ids)),
        "curve": _curve(ids, curves, options),
        "agents": _agent_view(ids, margins, below),
    }


def _curve(ids: list[int], curves: dict[int, list[tuple[int, int, float]]], options: CompareOptions) -> list[dict]:
    """The group's IQM per bucket of episodes with its band (every run has the same buckets: 1 to common)."""
    buckets = curves[ids[0]]
    matrix = np.array([[value for _, _, value in curves[run]] for run in ids])
    band = stats.iqm_intervals_by_column(matrix, reps=CURVE_REPS, seed=options.seed)
    return [
        {"first_episode": first, "last_episode": last, "iqm": b.estimate, "ci": _interval(b),
         "runs": [float(v) for v in matrix[:, i]]}
        for i, ((first, last, _), b) in enumerate(zip(buckets, band, strict=True))
    ]  # fmt: skip


def _agent_view(
    ids: list[int], margins: list[tuple[int, int, int, float]], below: dict[tuple[int, int], int]
) -> list[dict[str, Any]]:
    """Per curriculum stage of the window: the distribution over the group's agents (every run's) of mean
    survival minus baseline, and per run how many agents the audit flagged below baseline at that stage."""
    chosen = set(ids)
    stages = sorted({stage for run, stage, _, _ in margins if run in chosen})
    view = []
    for stage in stages:
        values = np.array([m for run, s, _, m in margins if run in chosen and s == stage])
        view.append({
            "stage": stage,
            "agents": len(values),
            "survival_minus_baseline": dict(zip((f"p{q}" for q in QUANTILES),
                                                map(float, np.percentile(values, QUANTILES)), strict=True)),
            "below_baseline_fraction": float((values < 0).mean()),
            "flagged_below_baseline": [below.get((run, stage), 0) for run in ids],
        })  # fmt: skip
    return view


def _improvements(groups: list[_Group], scores: dict[int, tuple[float, int]], options: CompareOptions) -> list[dict]:
    """P(X > Y) for every pair of groups, X before Y in group order."""
    found = []
    for i, x in enumerate(groups):
        for y in groups[i + 1 :]:
            xs = np.array([scores[run.id][0] for run in x.runs])
            ys = np.array([scores[run.id][0] for run in y.runs])
            interval = stats.improvement_interval(xs, ys, reps=options.reps, seed=options.seed)
            found.append({"x": x.label, "y": y.label, "probability": interval.estimate, "ci": _interval(interval),
                          "note": _too_few(min(len(xs), len(ys)))})  # fmt: skip
    return found


def _add_profiles(
    report_groups: list[dict], scores: dict[int, tuple[float, int]], groups: list[_Group], seed: int
) -> None:
    every = np.array([scores[run.id][0] for group in groups for run in group.runs])
    thresholds = np.linspace(every.min(), every.max(), PROFILE_THRESHOLDS)
    for report, group in zip(report_groups, groups, strict=True):
        values = np.array([scores[run.id][0] for run in group.runs])
        profile = stats.profile_interval(values, thresholds, seed=seed)
        report["profile"] = [{"threshold": float(t), "fraction": p.estimate, "ci": _interval(p)}
                             for t, p in zip(thresholds, profile, strict=True)]  # fmt: skip
