"""``townlet-telemetry runs`` and ``episodes``: what a database holds, run by run and episode by episode."""

from typing import Annotated

import typer

from townlet.audit.reports import BUCKET_COLUMNS, EPISODE_COLUMNS, buckets_report, episodes_report, runs_report
from townlet.defaults import MAX_POINTS
from townlet.persistence.reader import EpisodeBucket, EpisodeSummary, RunSummary, TelemetryReader
from townlet.wording import counted
from townlet_cli.console import make_console
from townlet_cli.options import DEFAULT, AtLeast, CsvFlag, DbOption, JsonFlag, RunOption
from townlet_cli.output import ConflictingOptions, fmt, machine_format, write_csv, write_json

RUN_COLUMNS = ("id", "started_at", "status", "num_agents", "episodes", "schema_version", "device", "seed")


#: The runs table shows at most this many runs, the newest (a table of 10,000 took rich 21 s to draw).
TABLE_RUNS = 100


def runs(
    db: DbOption = DEFAULT,
    as_json: JsonFlag = False,
    show_all: Annotated[
        bool, typer.Option("--all", help=f"Table every run, not only the newest {TABLE_RUNS} (--json always has all).")
    ] = False,
) -> None:
    """List the runs in the database: id, start (UTC), status, agents, episodes, schema version, device, seed.

    Example: townlet-telemetry runs --db townlet.db
    """
    with TelemetryReader(db) as reader:
        found = reader.runs()
    if as_json:
        write_json(runs_report(found))
        return
    from rich.table import Table

    shown = found if show_all else found[-TABLE_RUNS:]
    left = len(found) - len(shown)
    table = Table(
        title=f"runs in {reader.label}",
        caption=f"the newest {len(shown)} of {counted(len(found), 'run')}; --all tables them all, --json lists them"
        if left
        else None,
    )
    for header in ("run", "started (UTC)", "status", "agents", "episodes", "schema", "device", "seed"):
        table.add_column(header, justify="left" if header in ("started (UTC)", "status", "device") else "right")
    for run in shown:
        started = run.started_at.replace("T", " ")[:19]
        table.add_row(*(started if c == "started_at" else fmt(getattr(run, c)) for c in RUN_COLUMNS))
    make_console().print(table)


def episodes(
    db: DbOption = DEFAULT,
    run: RunOption = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Show at most N episodes.", click_type=AtLeast(1))
    ] = None,
    offset: Annotated[
        int, typer.Option("--offset", help="Skip the first N episodes (with --limit).", click_type=AtLeast(0))
    ] = 0,
    last: Annotated[
        int | None, typer.Option("--last", help="Only the final N episodes.", click_type=AtLeast(1))
    ] = None,
    points: Annotated[
        int | None,
        typer.Option(
            "--points",
            help="Summarise the whole run into at most N rows of consecutive episodes (a chart's budget): "
            "per row its first and last episode, the count, and survival and reward mean (weighted by agent "
            "rows), min and max, exact over the row's episodes.",
            click_type=AtLeast(2, MAX_POINTS),
        ),
    ] = None,
    as_json: JsonFlag = False,
    as_csv: CsvFlag = False,
) -> None:
    """Episodes of a run (the latest by default) with survival and reward across agents.

    Per episode: steps, curriculum stage, duration, and the agents' survival and reward (mean, min, max),
    read from the episodes' rollups (one row per episode, whatever the agent count).

    Example: townlet-telemetry episodes --run 1 --last 10
    """
    output = machine_format(as_json, as_csv)
    if last is not None and (limit is not None or offset):
        raise ConflictingOptions("--last cannot be combined with --limit/--offset: use one or the other")
    if points is not None and (limit is not None or offset or last is not None):
        raise ConflictingOptions("--points summarises the whole run: drop --limit/--offset/--last, or --points")
    if points is not None:
        with TelemetryReader(db) as reader:
            chosen = reader.run(run)
            buckets = reader.episode_buckets(chosen, points)
        _write_buckets(output, reader.label, chosen, buckets)
        return
    with TelemetryReader(db) as reader:
        chosen = reader.run(run)
        rows = reader.episodes(chosen, limit=limit, offset=offset, last=last)
    if output == "json":
        write_json(episodes_report(chosen.id, rows))
    elif output == "csv":
        write_csv(EPISODE_COLUMNS, ([chosen.id, *row] for row in rows))
    else:
        _episodes_table(reader.label, chosen, rows)


def _write_buckets(output: str | None, label: str, run: RunSummary, buckets: list[EpisodeBucket]) -> None:
    if output == "json":
        write_json(buckets_report(run.id, buckets))
    elif output == "csv":
        write_csv(BUCKET_COLUMNS, ([run.id, *row] for row in buckets))
    else:
        from rich.table import Table

        table = Table(
            title=f"run {run.id} in {label}: {counted(run.episodes, 'episode')} in {counted(len(buckets), 'row')}"
        )
        headers = ("episodes", "count", "stage", "survival mean", "min", "max", "reward mean", "min", "max")
        for header in headers:
            table.add_column(header, justify="right")
        for b in buckets:
            span = str(b.episode) if b.first_episode == b.episode else f"{b.first_episode}-{b.episode}"
            cells = (b.episodes, b.curriculum_stage, b.survival_mean, b.survival_min, b.survival_max)
            table.add_row(span, *map(fmt, (*cells, b.reward_mean, b.reward_min, b.reward_max)))
        make_console().print(table)


def _episodes_table(label: str, run: RunSummary, rows: list[EpisodeSummary]) -> None:
    from rich.table import Table

    table = Table(
        title=f"run {run.id} in {label}: {len(rows)} of {counted(run.episodes, 'episode')}, "
        f"{counted(run.num_agents, 'agent')}"
    )
    headers = ("episode", "steps", "stage", "seconds", "survival mean", "min", "max", "reward mean", "min", "max")
    for header in headers:
        table.add_column(header, justify="right")
    for row in rows:
        table.add_row(
            *map(
                fmt,
                (
                    row.episode,
                    row.steps,
                    row.curriculum_stage,
                    row.duration_s,
                    row.survival_mean,
                    row.survival_min,
                    row.survival_max,
                    row.reward_mean,
                    row.reward_min,
                    row.reward_max,
                ),
            )
        )
    make_console().print(table)
