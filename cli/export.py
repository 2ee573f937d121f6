"""``townlet-telemetry export``: every agent row of a run at full resolution, streamed as CSV or JSON Lines."""

import csv
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated

import typer

from townlet.errors import TelemetryError
from townlet.persistence.reader import RunSummary, TelemetryReader
from townlet.telemetry.dto import ALL_FIELDS, AgentColumns
from townlet.telemetry.payloads import encode
from townlet.telemetry.recording import STEP_COLUMNS
from townlet.wording import counted
from townlet_cli.options import DEFAULT, AtLeast, DbOption
from townlet_cli.output import ConflictingOptions

#: Rows of older versions leave the newer columns empty, so one CSV header serves a run that spans an upgrade.
CSV_HEADER = ("run", "schema_version", *ALL_FIELDS)


class ExportFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"
    parquet = "parquet"


class OutputExists(TelemetryError):
    """``--out`` names a file that exists: exporting never overwrites without ``--force``."""


def export(
    fmt: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            "-f",
            help="csv (header row), jsonl (one object a line) or parquet (typed columns, needs --out).",
        ),
    ],
    db: DbOption = DEFAULT,
    run: Annotated[
        list[int] | None,
        typer.Option(
            "--run",
            "-r",
            help="A run to export (repeat for more, in that order); default: the latest run.",
            click_type=AtLeast(1),
        ),
    ] = None,
    out: Annotated[str, typer.Option("--out", "-o", help="File to write; - for stdout.")] = "-",
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
    recordings: Annotated[
        bool,
        typer.Option(
            "--recordings",
            help="Export the runs' recorded steps instead of their agent rows: one row per recorded agent and "
            "step (csv or jsonl).",
        ),
    ] = False,
) -> None:
    """Export every agent row of a run (or of several: --run 1 --run 2) at full resolution, streamed in
    constant memory.

    One row per agent per episode, in run, episode then agent order; the run column tells runs apart.

    Each row carries run, schema_version and every DTO field (CSV: floats written exactly as stored; JSON
    Lines: the envelope's encoding, sorted keys; Parquet: typed columns, int32/float64, death_cause
    dictionary-encoded, null where an older schema version lacks a field, zstd, a row group per 50,000 rows;
    needs the parquet extra: pip install 'townlet-telemetry[parquet]').

    A progress bar goes to stderr when stdout is a terminal or --out is a file. A file is written under a
    temporary name (.NAME.partial-PID) and renamed when complete: an interrupted export leaves no partial
    file behind, and one killed with -9 leaves a hidden partial file that the next export to the same --out
    removes (and names).

    Recordings (every step of the recorded episodes, see `recordings`) are left out unless --recordings asks
    for them instead: one row per recorded agent and step, run, episode and agent_idx first, then the columns
    of `replay --steps` (jsonl: one object a line, its keys; csv: the same columns).

    Example: townlet-telemetry export --run 1 --format csv --out run1.csv
    """
    target = None if out == "-" else Path(out)
    if recordings and fmt is ExportFormat.parquet:
        raise ConflictingOptions("--recordings exports csv or jsonl: pick --format csv or --format jsonl")
    if fmt is ExportFormat.parquet:
        if target is None:
            raise ParquetNeedsFile("--format parquet writes a file: pass --out FILE.parquet")
        from townlet.telemetry.columnar import arrow_schema

        arrow_schema()  # refuses at once, in one line, when pyarrow is missing
    if target is not None and target.exists() and not force:
        raise OutputExists(f"{target} exists: pass --force to overwrite it or choose another --out")
    with TelemetryReader(db) as reader:
        chosen = [reader.run(r) for r in dict.fromkeys(run)] if run else [reader.run(None)]
        if recordings:
            total = sum(r.agent_steps for run_ in chosen for r in reader.recordings(run_))
            write = lambda handle: _write_steps(reader, chosen, fmt, handle)  # noqa: E731
        else:
            total = sum(r.episodes * r.num_agents for r in chosen)
            show_progress = target is not None or sys.stdout.isatty()
            write = lambda handle: _write(reader, chosen, fmt, handle, total, show_progress)  # noqa: E731
        if target is None:
            write(sys.stdout.buffer)
            return
        _check_output_directory(target)
        removed = remove_leftovers(target)
        partial = partial_path(target, os.getpid())
        try:
            with _writing(target, partial) as handle:
                write(handle)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
    for path in removed:
        typer.echo(f"removed {path}, left by an export that was killed", err=True)
    runs = ", ".join(str(r.id) for r in chosen)
    what = "recorded step" if recordings else "row"
    typer.echo(f"wrote {counted(total, what)} of run{'s' if len(chosen) > 1 else ''} {runs} to {target}", err=True)


class ParquetNeedsFile(TelemetryError):
    """Parquet is not a stream: it needs ``--out``."""


class OutputUnwritable(TelemetryError):
    """``--out`` cannot be written: a missing directory, a file in the way, permissions, a full disk."""


def partial_path(target: Path, pid: int) -> Path:
    """Where an export writes before renaming: hidden, beside ``target``, named for the exporting process."""
    return target.with_name(f".{target.name}.partial-{pid}")


def remove_leftovers(target: Path) -> list[Path]:
    """Delete partial files beside ``target`` whose exporting process no longer runs (killed with -9)."""
    removed = []
    for path in target.parent.glob(f".{target.name}.partial-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _process_alive(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive, and not ours to clean up
    return True


def _check_output_directory(target: Path) -> None:
    parent = target.parent
    if not parent.exists():
        raise OutputUnwritable(f"cannot write {target}: directory {parent} does not exist (create it first)")
    if not parent.is_dir():
        raise OutputUnwritable(f"cannot write {target}: {parent} is a file, not a directory: choose another --out")
    if target.is_dir():
        raise OutputUnwritable(f"cannot write {target}: it is a directory: name a file with --out")


@contextmanager
def _writing(target: Path, partial: Path) -> Iterator[IO[bytes]]:
    """Open ``partial`` for writing; an OS error (permissions, a full disk) becomes one line naming --out."""
    try:
        with partial.open("wb") as handle:
            yield handle
    except OSError as exc:
        raise OutputUnwritable(
            f"cannot write {target} ({exc.strerror or exc}): free space or choose another --out; nothing was written"
        ) from None


def _write(
    reader: TelemetryReader, runs: list[RunSummary], fmt: ExportFormat, out: IO[bytes], total: int, progress: bool
) -> None:
    batches = _batches(reader, runs)
    if progress:
        batches = _progress(batches, total)
    if fmt is ExportFormat.parquet:
        from townlet.telemetry.columnar import write_parquet

        write_parquet(batches, out)
    elif fmt is ExportFormat.jsonl:
        for run, agents in batches:
            key = {"run": run, "schema_version": agents.schema_version}
            out.write(b"".join(encode({**key, **a}) + b"\n" for a in agents.rows()))
    else:
        text = _TextSink(out)
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        for run, agents in batches:  # a field the row's version lacks is None: an empty cell
            writer.writerows((run, agents.schema_version, *row) for row in agents.tuples(ALL_FIELDS))
            text.flush()
    out.flush()


#: ``export --recordings``: which step, then the columns of ``replay --steps``.
STEP_HEADER = ("run", "episode", "agent_idx", *STEP_COLUMNS)


def _write_steps(reader: TelemetryReader, runs: list[RunSummary], fmt: ExportFormat, out: IO[bytes]) -> None:
    """Every recorded agent's steps, run, episode then agent order, one episode in memory at a time."""
    text = _TextSink(out)
    writer = csv.writer(text, lineterminator="\n")
    if fmt is ExportFormat.csv:
        writer.writerow(STEP_HEADER)
    for run in runs:
        for recording in reader.recordings(run):
            head = reader.recording_header(run, recording.episode)
            for agent in reader.recorded_agents(run, recording.episode, head):
                key = {"run": run.id, "episode": recording.episode, "agent_idx": agent.agent_idx}
                steps = agent.step_dicts(head)
                if fmt is ExportFormat.jsonl:
                    out.write(b"".join(encode({**key, **step}) + b"\n" for step in steps))
                else:
                    writer.writerows((*key.values(), *(step[c] for c in STEP_COLUMNS)) for step in steps)
                    text.flush()
    out.flush()


def _batches(reader: TelemetryReader, runs: list[RunSummary]) -> Iterator[tuple[int, AgentColumns]]:
    """``(run, checked columns)`` batches, run after run: each format takes the columns as it needs them."""
    for run in runs:
        for agents in reader.agent_column_batches(run):
            yield run.id, agents


class _TextSink:
    """A text ``write`` over a binary stream, buffered per batch (csv writes row by row)."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)

    def flush(self) -> None:
        self.out.write("".join(self.parts).encode())
        self.parts.clear()


def _progress(batches: Iterator[tuple[int, AgentColumns]], total: int) -> Iterator[tuple[int, AgentColumns]]:
    from rich.progress import Progress

    from townlet_cli.console import make_console

    # Transient: a failed export leaves only its one error line (a finished one says what it wrote after).
    console = make_console(stderr=True)
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("export rows", total=total)
        for run, agents in batches:
            yield run, agents
            progress.advance(task, agents.num_agents)
