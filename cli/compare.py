"""``townlet-telemetry compare``: groups of runs side by side, with RL-grade statistics (``townlet.analysis``)."""

from typing import Annotated, Any

import typer

from townlet.defaults import BOOTSTRAP_REPS as DEFAULT_REPS
from townlet.defaults import BOOTSTRAP_SEED as DEFAULT_SEED
from townlet.defaults import MIN_RUNS_FOR_INTERVAL, PROFILE_REPS
from townlet.persistence.reader import TelemetryReader
from townlet_cli.console import make_console
from townlet_cli.options import DEFAULT, AtLeast, CsvFlag, DbOption, JsonFlag
from townlet_cli.output import fmt, machine_format, write_csv, write_json
from townlet_cli.runs import NameLike, WhereFilter

CSV_COLUMNS = ("group", "run", "seed", "score")


def compare(
    run_ids: Annotated[
        list[int] | None, typer.Argument(metavar="[RUN]...", help="Run ids to compare (default: every run).", min=1)
    ] = None,
    db: DbOption = DEFAULT,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", "-t", help="Runs carrying this tag (repeat: any of them; --group-by tag: a group each)."),
    ] = None,
    name_like: NameLike = None,
    where: WhereFilter = None,
    group_by: Annotated[
        str,
        typer.Option(
            "--group-by",
            metavar="config|tag",
            help="config: runs whose stored config is equal except for learning-neutral keys (seed, episodes, "
            "threads, write queue, checkpoint cadence, recording, device spelling); tag: one group per --tag.",
        ),
    ] = "config",
    metric: Annotated[
        str,
        typer.Option(
            "--metric",
            metavar="NAME",
            help="survival (steps), reward (episode reward) or survival-over-baseline (survival minus baseline, "
            "steps): each episode's agents' mean.",
        ),
    ] = "survival",
    last: Annotated[
        int | None,
        typer.Option(
            "--last",
            help="Score each run over the last K episodes all selected runs have [default: 20].",
            click_type=AtLeast(0),
        ),
    ] = None,
    at: Annotated[
        int | None, typer.Option("--at", help="Score each run at this one episode instead.", click_type=AtLeast(0))
    ] = None,
    reps: Annotated[
        int, typer.Option("--reps", help="Bootstrap resamples (rliable's default).", click_type=AtLeast(0))
    ] = DEFAULT_REPS,
    seed: Annotated[
        int, typer.Option("--bootstrap-seed", help="Seed of the bootstrap's generator.", click_type=AtLeast(0))
    ] = DEFAULT_SEED,
    profile: Annotated[
        bool, typer.Option("--profile", help=f"Also the performance profile, with its CI ({PROFILE_REPS} resamples).")
    ] = False,
    as_json: JsonFlag = False,
    as_csv: CsvFlag = False,
) -> None:
    """Compare groups of runs (seeds of one config, or tagged groups) the way RL papers must.

    The run (seed) is the unit of replication: each run gives one score, the metric of each episode (its
    agents' mean) averaged over the window (--last K episodes that every selected run has, or --at EPISODE).
    Per group: runs (n), mean, std, median and the IQM (25 % trimmed mean) with its 95 % interval by
    stratified bootstrap over runs (--reps resamples from --bootstrap-seed, as rliable computes it); between
    groups the probability of improvement P(X > Y) with its interval. An interval needs at least
    MIN_RUNS runs in a group; fewer is said, never faked. Also: each group's learning curve (IQM per bucket of
    episodes, from per-episode rollups), the config keys that differ between groups, and per curriculum
    stage of the window the distribution over agents of survival minus baseline with the agents the audit
    flagged below baseline.

    --json prints everything (the dashboard's compare page answers the same bytes); --csv one row per run.

    Example: townlet-telemetry compare --tag seeds-1a2b3c4d --tag seeds-5e6f7a8b --group-by tag
    """
    from townlet.analysis.compare import CompareOptions, compare_report

    output = machine_format(as_json, as_csv)
    options = CompareOptions(
        runs=tuple(run_ids or ()), tags=tuple(tag or ()), name_like=name_like, where=tuple(where or ()),
        group_by=group_by, metric=metric, last=last, at=at, reps=reps, seed=seed, profile=profile,
    )  # fmt: skip
    with TelemetryReader(db) as reader:
        report = compare_report(reader, options)
    if output == "json":
        write_json(report)
    elif output == "csv":
        rows = ((g["label"], run, s, score) for g in report["groups"]
                for run, s, score in zip(g["runs"], g["seeds"], g["scores"], strict=True))  # fmt: skip
        write_csv(CSV_COLUMNS, rows)
    else:
        _tables(report, reader.label)


compare.__doc__ = (compare.__doc__ or "").replace("MIN_RUNS", str(MIN_RUNS_FOR_INTERVAL))


def _ci(bounds: list[float] | None) -> str:
    return "n/a" if bounds is None else f"[{fmt(bounds[0])}, {fmt(bounds[1])}]"


def _tables(report: dict[str, Any], label: str) -> None:
    from rich.table import Table

    from townlet.audit.sparkline import sparkline

    console = make_console()
    window = report["window"]
    boot = report["bootstrap"]
    table = Table(
        title=f"{report['metric']} in {label}, {window['asked']}: episodes {window['first_episode']}-"
        f"{window['last_episode']} of every run",
        caption=f"IQM CI: 95 % percentile, stratified bootstrap over runs, {boot['reps']} resamples, seed "
        f"{boot['seed']}; n/a: fewer than {boot['min_runs']} runs",
    )
    for header in ("group", "n", "mean", "std", "median", "IQM", "IQM 95 % CI", "IQM curve"):
        table.add_column(header, justify="left" if header in ("group", "IQM curve") else "right")
    for g in report["groups"]:
        curve = sparkline([point["iqm"] for point in g["curve"]], width=16)
        table.add_row(g["label"], str(g["n"]), fmt(g["mean"]), fmt(g["std"]), fmt(g["median"]), fmt(g["iqm"]),
                      _ci(g["iqm_ci"]), curve)  # fmt: skip
    console.print(table)
    for pair in report["improvement"]:
        note = f" ({pair['note']})" if pair["note"] else ""
        console.print(f"P({pair['x']} > {pair['y']}) = {fmt(pair['probability'])}, 95 % CI {_ci(pair['ci'])}{note}",
                      markup=False, highlight=False)  # fmt: skip
    if report["config_diff"]:
        diff = Table(title="config keys that differ (identical keys hidden)")
        diff.add_column("key")
        for g in report["groups"]:
            diff.add_column(g["label"])
        for row in report["config_diff"]:
            diff.add_row(row["key"], *(fmt(v) for v in row["values"]))
        console.print(diff)
    agents = Table(title="per agent, in the window: survival minus baseline (steps)")
    for header in ("group", "stage", "agents", "p10", "p25", "median", "p75", "p90", "below", "flagged per run"):
        agents.add_column(header, justify="left" if header in ("group", "flagged per run") else "right")
    for g in report["groups"]:
        for s in g["agents"]:
            q = s["survival_minus_baseline"]
            flagged = " ".join(f"{run}:{count}" for run, count in zip(g["runs"], s["flagged_below_baseline"],
                                                                       strict=True))  # fmt: skip
            agents.add_row(g["label"], str(s["stage"]), str(s["agents"]), *(f"{q[k]:.1f}" for k in q),
                           f"{s['below_baseline_fraction']:.0%}", flagged)  # fmt: skip
    console.print(agents)
    if any("profile" in g for g in report["groups"]):
        prof = Table(title="performance profile: fraction of runs scoring above each threshold (95 % CI)")
        prof.add_column("threshold", justify="right")
        for g in report["groups"]:
            prof.add_column(g["label"], justify="right")
        for i, point in enumerate(report["groups"][0]["profile"]):
            cells = [f"{fmt(g['profile'][i]['fraction'])} {_ci(g['profile'][i]['ci'])}" for g in report["groups"]]
            prof.add_row(fmt(point["threshold"]), *cells)
        console.print(prof)
    for g in report["groups"]:
        if g["note"]:
            console.print(f"{g['label']}: {g['note']}", markup=False, highlight=False)
