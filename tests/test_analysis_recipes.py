"""docs/analysis.md's recipes run as written; ``export --format parquet`` keeps types and bounded row groups."""

import json
import os
import re
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers import townlet, v1_copy
from tests.postgres_server import new_database

DOC = (Path(__file__).resolve().parents[1] / "docs" / "analysis.md").read_text()
RECIPES = re.findall(r"```python\n(.*?)```", DOC, flags=re.S)


def ok(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    result = townlet(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A directory as the doc assumes it: townlet.db with run 1, and run1.parquet exported from it."""
    path = tmp_path_factory.mktemp("analysis")
    ok("train", "--episodes", "4", "--agents", "3", "--device", "cpu", "--db", "townlet.db", cwd=path)
    ok("export", "--run", "1", "--format", "parquet", "--out", "run1.parquet", "--db", "townlet.db", cwd=path)
    return path


def expected(db: str) -> list[tuple[int, float]]:
    return [
        (e["episode"], e["survival_mean"])
        for e in json.loads(ok("episodes", "--run", "1", "--json", "--db", db).stdout)
    ]


def same(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> bool:
    return [e for e, _ in got] == [e for e, _ in want] and [m for _, m in got] == pytest.approx([m for _, m in want])


def run_recipe(source: str, cwd: Path) -> list[tuple[int, float]]:
    namespace: dict[str, object] = {}
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        exec(compile(source, "docs/analysis.md", "exec"), namespace)  # the recipe, as a reader would paste it
    finally:
        os.chdir(previous)
    return [(int(episode), float(mean)) for episode, mean in namespace["survival"]]  # type: ignore[union-attr]


def test_the_doc_has_five_recipes():
    assert len(RECIPES) == 5


@pytest.mark.parametrize("index", range(4), ids=["pandas parquet", "polars parquet", "duckdb parquet", "duckdb sqlite"])
def test_recipe_from_the_export_or_the_sqlite_file(workdir, index):
    before = (workdir / "townlet.db").read_bytes()
    assert same(run_recipe(RECIPES[index], workdir), expected(str(workdir / "townlet.db")))
    assert (workdir / "townlet.db").read_bytes() == before


def test_duckdb_recipe_straight_from_postgresql(workdir, postgres_base_url):
    url = new_database(postgres_base_url)
    ok("db", "copy", str(workdir / "townlet.db"), url)
    conninfo = url.removeprefix("postgresql+psycopg://")  # townlet@127.0.0.1:PORT/NAME
    user, rest = conninfo.split("@")
    hostport, name = rest.split("/")
    host, port = hostport.split(":")
    source = RECIPES[4].replace(
        "dbname=townlet host=dbhost user=townlet_reader", f"dbname={name} host={host} port={port} user={user}"
    )
    assert same(run_recipe(source, workdir), expected(url))


def test_parquet_columns_are_typed_and_v1_rows_hold_nulls(tmp_path):
    db = v1_copy(tmp_path)
    ok("db", "upgrade", "--db", str(db))
    ok("train", "--resume", "1", "--episodes", "1", "--device", "cpu", "--db", str(db))
    ok("export", "--run", "1", "-f", "parquet", "--out", str(tmp_path / "r.parquet"), "--db", str(db))
    table = pq.read_table(tmp_path / "r.parquet")
    types = {field.name: str(field.type) for field in table.schema}
    assert types["survival_steps"] == "int32" and types["epsilon"] == "double" and types["schema_version"] == "int8"
    assert types["death_cause"].startswith("dictionary<values=string")
    rows = table.to_pylist()
    jsonl = [
        json.loads(line) for line in ok("export", "--run", "1", "-f", "jsonl", "--db", str(db)).stdout.splitlines()
    ]
    assert len(rows) == len(jsonl) == 21
    for row, line in zip(rows, jsonl, strict=True):
        assert {k: v for k, v in row.items() if v is not None} == line  # same values; V1 rows: nulls for V2 fields
    assert rows[0]["schema_version"] == 1 and rows[0]["visits_bed"] is None and rows[0]["action_entropy"] is None
    assert rows[-1]["schema_version"] == 2 and rows[-1]["visits_bed"] is not None


def test_parquet_needs_a_file_and_names_the_extra_when_pyarrow_is_missing(workdir, tmp_path):
    refused = townlet("export", "--run", "1", "-f", "parquet", "--db", str(workdir / "townlet.db"))
    assert refused.returncode == 2 and "pass --out FILE.parquet" in refused.stderr
    blocker = tmp_path / "no_pyarrow"
    (blocker / "pyarrow").mkdir(parents=True)
    (blocker / "pyarrow" / "__init__.py").write_text("raise ImportError('No module named pyarrow')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    missing = townlet("export", "--run", "1", "-f", "parquet", "--out", str(tmp_path / "x.parquet"),
                  "--db", str(workdir / "townlet.db"), env=env)  # fmt: skip
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "pip install 'townlet-telemetry[parquet]'" in missing.stderr
    assert not (tmp_path / "x.parquet").exists()
