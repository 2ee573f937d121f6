"""``townlet-telemetry export``: every agent row of a run at full resolution, streamed as CSV or JSON Lines."""

import csv
import os
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from townlet.errors import TelemetryError
from townlet.persistence.reader import RunSummary, TelemetryReader
from townlet.telemetry.dto import ALL_FIELDS
from townlet.telemetry.payloads import encode
from townlet_cli.options import DEFAULT, DbOption, RunOption

#: Rows of older versions leave the newer columns empty, so one CSV header serves a run that spans an upgrade.
CSV_HEADER = ("run", "schema_version", *ALL_FIELDS)


class ExportFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


class OutputExists(TelemetryError):
    """``--out`` names a file that exists: exporting never overwrites without ``--force``."""


def export(
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="csv (header row) or jsonl (one object a line).")],
    db: DbOption = DEFAULT,
    run: RunOption = None,
    out: Annotated[str, typer.Option("--out", "-o", help="File to write; - for stdout.")] = "-",
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
) -> None:
    """Export every agent row of a run at full resolution, streamed in constant memory.

    One row per agent per episode, in episode then agent order.

    Each row carries run, schema_version and every DTO field (CSV: floats written exactly as stored; JSON
    Lines: the envelope's encoding, sorted keys). A progress bar goes to stderr when stdout is a terminal or
    --out is a file. A file is written under a temporary name and renamed when complete: an interrupted
    export never leaves a partial file behind.

    Example: townlet-telemetry export --run 1 --format csv --out run1.csv
    """
    target = None if out == "-" else Path(out)
    if target is not None and target.exists() and not force:
        raise OutputExists(f"{target} exists: pass --force to overwrite it or choose another --out")
    with TelemetryReader(db) as reader:
        chosen = reader.run(run)
        total = chosen.episodes * chosen.num_agents
        show_progress = target is not None or sys.stdout.isatty()
        if target is None:
            _write(reader, chosen, fmt, sys.stdout.buffer, total, show_progress)
            return
        partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
        try:
            with partial.open("wb") as handle:
                _write(reader, chosen, fmt, handle, total, show_progress)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
    typer.echo(f"wrote {total} rows of run {chosen.id} to {target}", err=True)


def _write(
    reader: TelemetryReader, run: RunSummary, fmt: ExportFormat, out: IO[bytes], total: int, progress: bool
) -> None:
    batches = _progress(reader.agent_payloads(run), total) if progress else reader.agent_payloads(run)
    if fmt is ExportFormat.jsonl:
        for version, agents in batches:
            out.write(b"".join(encode({"run": run.id, "schema_version": version, **a}) + b"\n" for a in agents))
    else:
        text = _TextSink(out)
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        for version, agents in batches:
            writer.writerows([run.id, version, *(a.get(f, "") for f in ALL_FIELDS)] for a in agents)
            text.flush()
    out.flush()


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


def _progress(
    batches: Iterator[tuple[int, list[dict[str, Any]]]], total: int
) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    from rich.progress import Progress

    from townlet_cli.console import make_console

    with Progress(console=make_console(stderr=True), transient=False) as progress:
        task = progress.add_task("export rows", total=total)
        for version, agents in batches:
            yield version, agents
            progress.advance(task, len(agents))
