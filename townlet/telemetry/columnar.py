"""Agent rows as typed Arrow columns, written to Parquet one row group per batch (``export --format parquet``).

The column types come from the DTO's own rules (``RULES[...].kind``): ints stay ints (int32, as in the
database), floats are float64, ``death_cause`` is a dictionary-encoded string. Rows written under an older
schema version have nulls in the newer columns. pyarrow is an optional extra, imported only here.
"""

from collections.abc import Iterable
from typing import IO, Any

from townlet.errors import TelemetryError
from townlet.telemetry.dto import ALL_FIELDS, DTO_BY_VERSION, AgentColumns


class ParquetUnavailable(TelemetryError):
    """``--format parquet`` without pyarrow installed."""


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise ParquetUnavailable(
            "export --format parquet needs pyarrow: pip install 'townlet-telemetry[parquet]' "
            "(or use --format csv or jsonl)"
        ) from None
    return pyarrow


def arrow_schema() -> Any:
    """run, schema_version, then every DTO field of every version, each with the type its rule says."""
    pa = _pyarrow()
    kinds = {name: rule.kind for cls in DTO_BY_VERSION.values() for name, rule in cls.RULES.items()}
    types = {int: pa.int32(), float: pa.float64(), str: pa.dictionary(pa.int8(), pa.string())}
    return pa.schema(
        [pa.field("run", pa.int32(), nullable=False), pa.field("schema_version", pa.int8(), nullable=False)]
        + [pa.field(name, types[kinds[name]]) for name in ALL_FIELDS]
    )


def write_parquet(batches: Iterable[tuple[int, AgentColumns]], out: IO[bytes]) -> None:
    """Write ``(run, checked columns)`` batches as one Parquet file, a row group per batch (bounded memory):
    each column goes to Arrow as it came from the database, no dict per row in between."""
    pa = _pyarrow()
    schema = arrow_schema()
    with pa.parquet.ParquetWriter(out, schema, compression="zstd") as writer:
        for run, agents in batches:
            n = agents.num_agents
            columns: dict[str, Any] = {"run": [run] * n, "schema_version": [agents.schema_version] * n}
            for name in ALL_FIELDS:
                column = agents.columns.get(name)
                columns[name] = [None] * n if column is None else list(column)  # None: a field the version lacks
            writer.write_batch(pa.RecordBatch.from_pydict(columns, schema=schema))
