"""``townlet-telemetry db``: upgrade, downgrade, and inspect a database's schema revision."""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from townlet.errors import TelemetryError
from townlet.persistence import revisions
from townlet.persistence.errors import DatabaseTooNew
from townlet.persistence.revisions import describe_revision
from townlet.wording import counted
from townlet_cli.console import make_console
from townlet_cli.options import DEFAULT, AtLeast, DbOption

if TYPE_CHECKING:
    from rich.console import Console

    from townlet.persistence.migrate import Loss
    from townlet.persistence.store import TelemetryStore


class UnknownRevision(TelemetryError):
    """A revision the shipped migrations do not have."""


app = typer.Typer(
    help=(
        "Create, upgrade, downgrade and check a townlet database's schema.\n\n"
        "Example: townlet-telemetry db current --db townlet.db"
    ),
    no_args_is_help=True,
)


def revision_history() -> str:
    """One line: each revision, its telemetry schema, and what it added (storage-only revisions say so)."""
    parts, previous = [], 0
    for revision, schema in revisions.SCHEMA_BY_REVISION.items():
        kind = f"schema {schema}" if schema != previous else f"schema {schema}, storage only"
        parts.append(f"{revision} ({kind}): {revisions.ADDED_BY_REVISION[revision]}")
        previous = schema
    return "revisions: " + "; ".join(parts)


NoBackupFlag = Annotated[
    bool, typer.Option("--no-backup", help="Do not copy a SQLite database aside before changing its schema.")
]


def _backup_first(store: "TelemetryStore", before: str, target: str, *, enabled: bool, console: "Console") -> str:
    """Before an existing database's schema changes: a backup copy beside a SQLite file, said where at once."""
    if before in (revisions.EMPTY, target):
        return ""
    return take_backup(store, before, enabled=enabled, console=console, holding=f" ({describe_revision(before)})")


def take_backup(store: "TelemetryStore", tag: str, *, enabled: bool, console: "Console", holding: str = "") -> str:
    """A backup copy beside a SQLite file (``<file>.bak-<tag>-<time>``), said where at once. Returns what to
    say once the change is done when no backup was taken: a change that is then refused stays one line."""
    from townlet.persistence.backup import backup_sqlite

    if not enabled:
        return f"no backup of {store.label} taken (--no-backup)"
    if store.url.get_backend_name() != "sqlite":
        return f"no backup of {store.label} taken: back up a PostgreSQL database with pg_dump if you need one"
    path = backup_sqlite(Path(store.url.database or ""), tag)
    console.print(f"backed up {store.label}{holding} to {path}")
    return ""


def _known_revision(revision: str, extra: str) -> str:
    from townlet.persistence import migrate

    known = migrate.script_revisions()
    if revision not in (*known, extra):
        raise UnknownRevision(f"unknown revision {revision!r}: choose one of {', '.join((*known, extra))}")
    return revisions.HEAD_REVISION if revision == "head" else revision


@app.command()
def upgrade(
    db: DbOption = DEFAULT,
    to: Annotated[str, typer.Option("--to", help="Target revision (default: this townlet's head).")] = "head",
    no_backup: NoBackupFlag = False,
) -> None:
    """Upgrade the database's schema to this townlet's version (creating it in a new database).

    An existing SQLite database is first copied beside itself as DB.bak-REVISION-TIMESTAMP (the command says
    where); --no-backup skips the copy. Rows written under older schema versions keep their version and
    replay exactly as before.

    Example: townlet-telemetry db upgrade --db townlet.db
    """
    from townlet.persistence import migrate  # SQLAlchemy and Alembic load only for the db commands
    from townlet.persistence.store import TelemetryStore

    console = make_console(stderr=True)  # what changed is status: stdout stays empty
    target = _known_revision(to, "head")
    with TelemetryStore.open_unchecked(db, write=True) as store:
        with store.transaction() as connection:
            before = migrate.database_revision(connection, store.label)
        if before != revisions.EMPTY and before not in migrate.script_revisions():
            raise DatabaseTooNew(
                f"{store.label} is at revision {before}, newer than this townlet knows: upgrade townlet instead"
            )
        unbacked = _backup_first(store, before, target, enabled=not no_backup, console=console)
        with store.transaction(migrating=True) as connection, _upgrade_progress(console) as progress:
            migrate.upgrade(connection, target, progress)
            after = migrate.database_revision(connection, store.label)
    if unbacked:
        console.print(unbacked)
    if before == after:
        console.print(f"{store.label} is already at {describe_revision(after)}")
    else:
        console.print(f"upgraded {store.label} from {describe_revision(before)} to {describe_revision(after)}")


#: Without a terminal, a long upgrade says how far it got at most this often (seconds).
PROGRESS_EVERY_S = 5.0


@contextmanager
def _upgrade_progress(console: "Console") -> Iterator[Callable[..., None]]:
    """What a long upgrade step reports (revision 0004 backfills every episode's rollup, 0005 every run's
    baseline flags): a bar on a terminal, else a plain line every ``PROGRESS_EVERY_S`` seconds and at the end."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("backfill {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    said = time.monotonic()
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task("rollups", total=None)
        shown = ["rollups"]

        def report(done: int, total: int, rows: int, what: str = "rollups") -> None:
            nonlocal said
            if what != shown[0]:  # the next revision's backfill begins
                shown[0] = what
                bar.reset(task, description=what)
            bar.update(task, completed=done, total=total)
            if not console.is_terminal and (done == total or time.monotonic() - said >= PROGRESS_EVERY_S):
                said = time.monotonic()
                episodes = "episode" if total == 1 else "episodes"
                console.print(f"backfilled the {what} of {done:,} of {total:,} {episodes} ({rows:,} agent rows)")

        yield report


class NotConfirmed(TelemetryError):
    """A change would drop stored data (a downgrade, ``runs delete``) and was not confirmed (--yes, or a yes
    typed on a terminal)."""


def describe_losses(losses: "list[Loss]") -> str:
    """``drops tables runs (3 rows), ...; drops columns a, b of t (values in 6 rows)``: one line."""
    tables = [f"{loss.table} ({counted(loss.rows, 'row')})" for loss in losses if loss.columns is None]
    columns = [
        f"columns {', '.join(loss.columns)} of {loss.table} (values in {counted(loss.rows, 'row')})"
        for loss in losses
        if loss.columns is not None and loss.relabels is None
    ]
    relabels = [
        f"relabels {loss.table}.{loss.columns[0]} "
        + ", ".join(f"{new} as {old}" for new, old in loss.relabels.items())
        + f" ({counted(loss.rows, 'row')})"
        for loss in losses
        if loss.columns is not None and loss.relabels is not None and loss.rows
    ]
    parts = [
        *(f"drops {c}" for c in columns),
        *([f"drops tables {', '.join(tables)}"] if tables else []),
        *relabels,
    ]
    text = "; ".join(parts) or "drops nothing"
    return text if sum(loss.rows for loss in losses) else f"{text} (no rows hold data there)"


def confirm_loss(line: str, *, yes: bool, store: "TelemetryStore", no_backup: bool) -> None:
    """Proceed on --yes or a yes typed on a terminal; otherwise refuse in one line saying what would be lost
    and how it is backed up (a copy of a SQLite file, pg_dump for PostgreSQL)."""
    import sys

    if store.url.get_backend_name() == "sqlite":
        backup_hint = "A backup is taken first (--no-backup skips it)." if not no_backup else ""
    else:
        backup_hint = f"Back it up first: pg_dump --format=custom --file townlet.dump '{store.label}'."
    if yes:
        return
    if sys.stdin.isatty() and sys.stderr.isatty():
        if typer.confirm(" ".join(filter(None, (f"{line}.", backup_hint, "Proceed?"))), default=False, err=True):
            return
        raise NotConfirmed(f"{line}: not confirmed, nothing changed")
    raise NotConfirmed(f"{line}: pass --yes to proceed. {backup_hint}".rstrip())


@app.command()
def downgrade(
    revision: Annotated[str, typer.Argument(help="Revision to go back to, e.g. 0001, or 'base' for none.")],
    db: DbOption = DEFAULT,
    no_backup: NoBackupFlag = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Drop the data the downgrade removes without asking.")
    ] = False,
) -> None:
    """Downgrade the database's schema to REVISION, dropping only what later revisions added.

    Going back to 0002 drops the learner checkpoints (a resume then restarts learning) and relabels
    interrupted runs as crashed and stale ones as running; going back to 0001 also drops the schema 2 columns
    (visits, action entropy) and relabels rows written under schema 2 as schema 1; going back to base drops
    every table. The command first says in one line what
    will be lost, with row counts, and proceeds only with --yes or a yes typed on a terminal (a downgrade
    that loses no rows needs neither). A SQLite database is then copied beside itself (--no-backup skips
    the copy); back up a PostgreSQL database with pg_dump first.

    Example: townlet-telemetry db downgrade 0001 --db townlet.db --yes
    """
    from townlet.persistence import migrate  # SQLAlchemy and Alembic load only for the db commands
    from townlet.persistence.store import TelemetryStore

    console = make_console(stderr=True)  # what changed is status: stdout stays empty
    target = _known_revision(revision, "base")
    with TelemetryStore.open_unchecked(db, write=True) as store:
        with store.transaction() as connection:
            before = migrate.database_revision(connection, store.label)
            if before == revisions.EMPTY:
                console.print(f"{store.label} has no schema: nothing to downgrade")
                return
            if before not in migrate.script_revisions():
                raise DatabaseTooNew(
                    f"{store.label} is at revision {before}, newer than this townlet knows: upgrade townlet instead"
                )
            losses = migrate.data_lost_by_downgrade(connection, before, target)
        line = f"downgrading {store.label} from {describe_revision(before)} to {revision} {describe_losses(losses)}"
        if any(loss.rows for loss in losses):
            confirm_loss(line, yes=yes, store=store, no_backup=no_backup)
        unbacked = _backup_first(store, before, target, enabled=not no_backup, console=console)
        with store.transaction(migrating=True) as connection:
            migrate.downgrade(connection, target)
    if unbacked:
        console.print(unbacked)
    console.print(line)
    console.print(f"downgraded {store.label} from {describe_revision(before)} to {revision}")


@app.command()
def current(db: DbOption = DEFAULT) -> None:
    """Show the database's schema revision and whether this townlet can use it (read-only).

    A revision either adds a telemetry schema version (0001, 0002) or is a storage revision under the same
    schema (0003 adds learner checkpoints and run states; envelopes and agent rows are unchanged). The
    second line lists them all.

    Example: townlet-telemetry db current --db townlet.db
    """
    from townlet.persistence import migrate  # SQLAlchemy and Alembic load only for the db commands
    from townlet.persistence.store import TelemetryStore

    console = make_console()
    with TelemetryStore.open_unchecked(db, write=False) as store, store.transaction() as connection:
        revision = migrate.database_revision(connection, store.label)
    status = (
        "up to date"
        if revision == revisions.HEAD_REVISION
        else f"this townlet needs {describe_revision(revisions.HEAD_REVISION)}"
    )
    console.print(f"{store.label}: {describe_revision(revision)}, {status}")
    console.print(revision_history())


@app.command()
def check(
    db: DbOption = DEFAULT,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Rebuild what differs (rollups, baseline flags, survival blocks) of each run from its agent rows.",
        ),
    ] = False,
) -> None:
    """Check that the models and the migrated database agree (like `alembic check`), that every stored
    learner checkpoint is intact (its size and sha256 digest; a format 1 checkpoint's CRC-32s), and that every
    episode's rollup and every run's maintained baseline flags and survival blocks equal what the agent rows
    give (reads every agent row); exit 1 on any difference or damage, naming each. --repair rebuilds what
    differs, run by run, and checks again.

    Example: townlet-telemetry db check --db townlet.db
    """
    from townlet.persistence import migrate  # SQLAlchemy and Alembic load only for the db commands
    from townlet.persistence.store import TelemetryStore
    from townlet.training.checkpoint_seal import CheckpointDamaged, describe, verify

    console, notes = make_console(), make_console(stderr=True)
    problems = 0
    with TelemetryStore.open(db, write=repair) as store:
        with store.transaction() as connection:
            differences = migrate.model_differences(connection)
        for difference in differences:
            console.print(f"difference: {difference}", markup=False)
        checked = 0
        for run, checkpoint in store.checkpoints():
            checked += 1
            try:
                verify(checkpoint)
            except CheckpointDamaged as exc:
                problems += 1
                console.print(
                    f"damaged checkpoint: {describe(checkpoint, run)} ({exc}): "
                    f"resume with --from-checkpoint or --fresh-learner (townlet-telemetry train --help)",
                    markup=False,
                )
        recorded, damaged = store.check_recordings()
        for line in damaged:
            problems += 1
            console.print(f"recording differs: {line}", markup=False)
        # What the database derives from the agent rows: (name, plural, unit of a rebuild's count, check, rebuild).
        derived = (
            ("rollup", "rollups", "episode", store.check_rollups, store.rebuild_rollups),
            ("baseline flag", "baseline flags", "flag", store.check_flags, store.rebuild_flags),
            ("survival block", "survival blocks", "row", store.check_blocks, store.rebuild_blocks),
        )
        found = {name: list(check()) for name, _, _, check, _ in derived}
        if repair:
            for name, plural, unit, check, rebuild in derived:
                for run in sorted({d.run for d in found[name]}):
                    rebuilt = counted(rebuild(run), unit)
                    notes.print(f"rebuilt the {plural} of run {run} ({rebuilt}) from its agent rows", markup=False)
                found[name] = list(check())
        fix = f"rebuild it with `townlet-telemetry db check --repair {store.db_flag}`"
        for name, found_here in found.items():
            for difference in found_here:
                console.print(f"{name} differs: {difference.describe()}: {fix}", markup=False)
    if differences or problems or any(found.values()):
        raise typer.Exit(code=1)
    console.print(
        f"{store.label}: models and migrations agree at {describe_revision(revisions.HEAD_REVISION)}; "
        f"{counted(checked, 'checkpoint')} intact; every rollup, baseline flag and survival block matches the "
        f"agent rows; {counted(recorded, 'recorded agent')} agree with their agent rows"
    )


@app.command()
def copy(
    src: Annotated[str, typer.Argument(help="Database to copy from: a SQLite path or a URL.")],
    dst: Annotated[str, typer.Argument(help="Database to copy into (created when new): a SQLite path or a URL.")],
    run: Annotated[
        list[int] | None,
        typer.Option("--run", help="A run of SRC to copy (repeat for more); default: all.", click_type=AtLeast(1)),
    ] = None,
    skip_existing: Annotated[
        bool, typer.Option("--skip-existing", help="Skip runs DST already has (same uuid) instead of refusing.")
    ] = False,
) -> None:
    """Copy runs from SRC into DST with every row, config, uuid, timestamp and checkpoint.

    Moves a laptop's SQLite runs into the team PostgreSQL, or back. A copied run replays and exports
    byte-identically and can be resumed in DST (its checkpoints go with it). Each run is copied in one
    transaction: whole or not at all. Run ids are DST's own (the next free ones). A run DST already has (same
    uuid) is refused unless --skip-existing; a run being trained now is refused. Both databases must be at
    this townlet's revision (the error names which to upgrade); a new DST is created.

    Example: townlet-telemetry db copy townlet.db postgresql+psycopg://me@dbhost/townlet --run 3
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from townlet.persistence.copy import copy_runs, plan_into, runs_to_copy
    from townlet.persistence.store import TelemetryStore

    console = make_console(stderr=True)  # progress and what was copied are status: stdout stays empty
    with TelemetryStore.open(src, write=False) as source:
        listed = runs_to_copy(source, run)  # SRC's refusals before DST is even created
        with TelemetryStore.open(dst, write=True, wal=False) as target:
            plan = plan_into(target, listed, source.label, skip_existing=skip_existing)  # refusals before writes
            target.use_wal()  # only now: a refused copy leaves an existing DST byte-identical
            columns = (TextColumn("copy agent rows"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
                task = progress.add_task("copy", total=plan.agent_rows)
                report = copy_runs(source, target, plan, on_rows=lambda n: progress.advance(task, n))
    for old, new in report.copied.items():
        console.print(f"copied run {old} of {source.label} to run {new} of {target.label}")
    for old, new in plan.skipped.items():
        console.print(f"skipped run {old}: {target.label} already has it as run {new} (--skip-existing)")
    console.print(f"{counted(len(report.copied), 'run')}, {counted(report.agent_rows, 'agent row')} copied")
