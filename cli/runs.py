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

RUN_COLUMNS = ("id", "name", "tags", "started_at", "status", "num_agents", "episodes", "device", "seed")
RUN_HEADERS = ("run", "name", "tags", "started (UTC)", "status", "agents", "episodes", "device", "seed")
LEFT_COLUMNS = {"name", "tags", "started_at", "status", "device"}
NO_WRAP = {"id", "started_at", "status", "num_agents", "episodes", "device", "seed"}


#: The runs table shows at most this many runs, the newest (a table of 10,000 took rich 21 s to draw).
TABLE_RUNS = 100

app = typer.Typer(
    help=(
        "List the runs in the database (the command alone), filter them, and name, tag or delete them.\n\n"
        "Example: townlet-telemetry runs --tag sweep-3 --where population.learning_rate=0.001"
    ),
    invoke_without_command=True,
)

TagFilter = Annotated[
    list[str] | None,
    typer.Option("--tag", "-t", help="Only runs carrying this tag (repeat: runs carrying any of them)."),
]
NameLike = Annotated[
    str | None,
    typer.Option(
        "--name-like",
        metavar="PATTERN",
        help="Only runs whose name matches PATTERN: a case-insensitive glob (lr*), or without * ? [ any "
        "part of the name.",
    ),
]
WhereFilter = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        "-w",
        metavar="KEY=VALUE",
        help="Only runs whose stored config has KEY=VALUE (any key of `runs --json`'s config, dotted: "
        "training.agents=64, population.learning_rate=1e-3, environment.grid_size=8; repeat: all must hold).",
    ),
]
RunArgument = Annotated[int, typer.Argument(metavar="RUN", help="Run id (see `runs`).", min=1)]


def selected_runs(
    reader: TelemetryReader, tags: list[str] | None, name_like: str | None, where: list[str] | None
) -> list[RunSummary]:
    """The runs the filters select, oldest first; an unknown tag or config key is refused."""
    from townlet.analysis.run_selection import RunFilter

    chosen = RunFilter.parse(tags or (), name_like, where or ())
    found = reader.runs()
    if not chosen:
        return found
    configs = reader.run_configs()
    chosen.check(reader.tags(), configs)
    return [run for run in found if chosen.selects(run.name, run.tags, configs[run.id])]


@app.callback()
def runs(
    ctx: typer.Context,
    db: DbOption = DEFAULT,
    as_json: JsonFlag = False,
    show_all: Annotated[
        bool, typer.Option("--all", help=f"Table every run, not only the newest {TABLE_RUNS} (--json always has all).")
    ] = False,
    tag: TagFilter = None,
    name_like: NameLike = None,
    where: WhereFilter = None,
) -> None:
    """List the runs in the database: id, name, tags, start (UTC), status, agents, episodes, device, seed.

    --tag (any of those given), --name-like and --where (each) filter the list; all three must hold.
    `runs rename`, `runs tag`, `runs untag` and `runs delete` change it.

    Example: townlet-telemetry runs --db townlet.db --tag sweep-3
    """
    if ctx.invoked_subcommand is not None:
        return
    with TelemetryReader(db) as reader:
        found = selected_runs(reader, tag, name_like, where)
    if as_json:
        write_json(runs_report(found))
        return
    from rich.table import Table

    shown = found if show_all else found[-TABLE_RUNS:]
    left = len(found) - len(shown)
    filtered = " matching the filters" if tag or name_like is not None or where else ""
    table = Table(
        title=f"runs in {reader.label}{filtered}",
        caption=f"the newest {len(shown)} of {counted(len(found), 'run')}; --all tables them all, --json lists them"
        if left
        else None,
    )
    devices = {run.device for run in shown}
    columns = [(c, h) for c, h in zip(RUN_COLUMNS, RUN_HEADERS, strict=True) if c != "device" or len(devices) > 1]
    if len(devices) == 1:
        table.caption = " ".join(filter(None, (table.caption, f"(every run on {next(iter(devices))})")))
    for column, header in columns:
        table.add_column(
            header, justify="left" if column in LEFT_COLUMNS else "right", no_wrap=column in NO_WRAP,
            min_width=16 if column == "started_at" else None,
        )  # fmt: skip
    for run in shown:
        cells = {"started_at": run.started_at.replace("T", " ")[:16], "tags": " ".join(run.tags), "name": run.name}
        table.add_row(*(fmt(cells[c]) if c in cells else fmt(getattr(run, c)) for c, _ in columns))
    make_console().print(table)


def _existing(db: str, runs: list[int]) -> None:
    """Refuse a run that does not exist before anything opens the database for writing (nothing is touched)."""
    with TelemetryReader(db) as reader:
        for run in runs:
            reader.run(run)


@app.command()
def rename(
    run: RunArgument,
    name: Annotated[str, typer.Argument(metavar="TEXT", help="The run's new name ('' removes it).")],
    db: DbOption = DEFAULT,
) -> None:
    """Name a run (at most 120 characters, one line); an empty TEXT removes its name.

    Example: townlet-telemetry runs rename 3 "baseline, lr 1e-3"
    """
    from townlet.persistence.run_labels import checked_name
    from townlet.persistence.store import TelemetryStore

    kept = checked_name(name) if name.strip() else None
    _existing(db, [run])
    with TelemetryStore.open(db, write=True, must_exist=True) as store:
        store.rename_run(run, kept)
    make_console(stderr=True).print(f"run {run} " + (f"named {kept!r}" if kept else "has no name now"))


@app.command("tag")
def tag_runs(
    run: RunArgument,
    tags: Annotated[list[str], typer.Argument(metavar="TAG...", help="Tags to add: letters, digits, _ . : + = -.")],
    db: DbOption = DEFAULT,
) -> None:
    """Add tags to a run (a tag it already has is kept once).

    Example: townlet-telemetry runs tag 3 sweep-3 lr-1e-3
    """
    from townlet.persistence.run_labels import checked_tags
    from townlet.persistence.store import TelemetryStore

    wanted = checked_tags(tags)
    _existing(db, [run])
    with TelemetryStore.open(db, write=True, must_exist=True) as store:
        added, _ = store.label_run(run, add=wanted)
    said = ", ".join(added) if added else "nothing new"
    make_console(stderr=True).print(f"run {run}: tagged {said}", markup=False, highlight=False)


@app.command()
def untag(
    run: RunArgument,
    tags: Annotated[list[str], typer.Argument(metavar="TAG...", help="Tags to remove.")],
    db: DbOption = DEFAULT,
) -> None:
    """Remove tags from a run; a tag the run does not carry is refused, naming the ones it has.

    Example: townlet-telemetry runs untag 3 sweep-3
    """
    from townlet.persistence.run_labels import BadLabel
    from townlet.persistence.store import TelemetryStore

    with TelemetryReader(db) as reader:
        have = reader.run(run).tags
    missing = [t for t in tags if t not in have]
    if missing:
        raise BadLabel(f"run {run} is not tagged {missing[0]!r} (its tags: {', '.join(have) or 'none'})")
    with TelemetryStore.open(db, write=True, must_exist=True) as store:
        _, removed = store.label_run(run, remove=tags)
    make_console(stderr=True).print(f"run {run}: untagged {', '.join(removed)}", markup=False, highlight=False)


@app.command()
def delete(
    run_ids: Annotated[list[int], typer.Argument(metavar="RUN...", help="Run ids to delete (see `runs`).", min=1)],
    db: DbOption = DEFAULT,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
    no_backup: Annotated[
        bool, typer.Option("--no-backup", help="Do not copy a SQLite database aside before deleting.")
    ] = False,
) -> None:
    """Delete runs and everything stored with them: episodes, agent rows, rollups, flags, checkpoints,
    recordings, names and tags.

    The command first says in one line what goes, with counts, and proceeds only with --yes or a yes typed on
    a terminal. A run a process is training is refused. A SQLite database is then copied beside itself
    (townlet.db.bak-runs-<time>; --no-backup skips it); back up a PostgreSQL database with pg_dump first.

    Example: townlet-telemetry runs delete 4 5 --yes
    """
    from townlet.persistence.store import TelemetryStore
    from townlet_cli.db import confirm_loss, take_backup

    runs_given = list(dict.fromkeys(run_ids))
    _existing(db, runs_given)
    console = make_console(stderr=True)
    with TelemetryStore.open(db, write=True, must_exist=True) as store:
        contents = store.run_contents(runs_given)
        line = "deleting " + "; ".join(c.describe() for c in contents) + f" from {store.label}"
        confirm_loss(line, yes=yes, store=store, no_backup=no_backup)
        unbacked = take_backup(store, "runs", enabled=not no_backup, console=console)
        store.delete_runs(runs_given)
    if unbacked:
        console.print(unbacked)
    console.print(f"deleted {counted(len(runs_given), 'run')}: " + ", ".join(map(str, runs_given)))


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
