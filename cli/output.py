"""Where read commands put their answers: machine formats (JSON, CSV) on stdout and nothing else there;
tables through rich on the terminal; errors through ``TelemetryError`` (one line on stderr, exit code 2).
"""

import csv
import sys
from collections.abc import Iterable, Sequence
from typing import Any, BinaryIO, TextIO

from townlet.errors import TelemetryError
from townlet.telemetry.payloads import encode


class ConflictingOptions(TelemetryError):
    """Two options that cannot be used together."""


def machine_format(as_json: bool, as_csv: bool) -> str | None:
    """``"json"``, ``"csv"`` or ``None`` (a table); both at once is a one-line error."""
    if as_json and as_csv:
        raise ConflictingOptions("--json and --csv cannot be used together: pick one")
    return "json" if as_json else "csv" if as_csv else None


def stdout_bytes() -> BinaryIO:
    return sys.stdout.buffer


def write_json(value: Any, out: BinaryIO | None = None) -> None:
    """Deterministic JSON (the payload encoder: sorted keys, compact) and one newline."""
    out = out or stdout_bytes()
    out.write(encode(value))
    out.write(b"\n")
    out.flush()


def write_csv(header: Sequence[str], rows: Iterable[Sequence[Any]], out: TextIO | None = None) -> None:
    """CSV with a header row; floats as ``repr`` (full resolution, round-trips exactly)."""
    writer = csv.writer(out or sys.stdout, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    (out or sys.stdout).flush()


def fmt(value: Any) -> str:
    """A table cell: floats to 3 significant decimals, everything else as is."""
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value != int(value) else f"{value:.0f}"
    return "" if value is None else str(value)
