"""``export --out``: every way the output cannot be written is one line, and a killed export's leftovers go."""

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from townlet_cli.app import app
from townlet_cli.export import partial_path

runner = CliRunner()


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("export") / "t.db"
    result = runner.invoke(app, ["train", "--episodes", "3", "--agents", "4", "--device", "cpu", "--db", str(path)])
    assert result.exit_code == 0, result.output
    return path


def refused(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: cannot write ") and result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def export(db: Path, out: Path):
    return runner.invoke(app, ["export", "--format", "csv", "--db", str(db), "--out", str(out)])


def test_into_a_missing_directory(db, tmp_path):
    refused(export(db, tmp_path / "nope" / "x.csv"), "does not exist (create it first)")
    assert list(tmp_path.iterdir()) == []


def test_under_a_regular_file(db, tmp_path):
    (tmp_path / "file").write_text("x")
    refused(export(db, tmp_path / "file" / "x.csv"), "is a file, not a directory")


def test_into_a_directory_the_user_cannot_write(db, tmp_path):
    target = tmp_path / "locked"
    target.mkdir()
    target.chmod(0o555)
    if os.geteuid() == 0:  # root ignores permissions; the immutable attribute stops it too
        subprocess.run(["chattr", "+i", str(target)], check=True)
    try:
        refused(export(db, target / "x.csv"), "choose another --out")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(target)], check=True)
        target.chmod(0o755)
    assert list(target.iterdir()) == []


def _small_file_limit() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (512, resource.RLIM_INFINITY))  # writes past 512 bytes fail (EFBIG)


def test_onto_a_full_disk_writes_nothing(db, tmp_path):
    out = tmp_path / "x.csv"
    result = subprocess.run(
        [sys.executable, "-m", "townlet_cli", "export", "--format", "csv", "--db", str(db), "--out", str(out)],
        capture_output=True, text=True, preexec_fn=_small_file_limit, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    last = result.stderr.splitlines()[-1]  # after the progress bar, which goes to stderr too
    assert last.startswith(f"error: cannot write {out} (File too large)") and "nothing was written" in last
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_later_export_removes_what_a_killed_one_left_and_says_so(db, tmp_path):
    out = tmp_path / "x.csv"
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = partial_path(out, dead.pid)
    leftover.write_text("half a file")
    alive = partial_path(out, 1)  # a process that runs (init): an export in progress, left alone
    alive.write_text("in progress")
    result = export(db, out)
    assert result.exit_code == 0, result.output
    assert f"removed {leftover}, left by an export that was killed" in result.stderr
    assert not leftover.exists() and alive.exists()
    assert out.read_text().count("\n") == 1 + 3 * 4
    alive.unlink()


@pytest.mark.parametrize("batch", [7, 64])
def test_parquet_is_written_one_zstd_row_group_per_batch(db, tmp_path, batch):
    """What keeps a Parquet export's memory flat whatever the run's size: each batch the reader streams goes
    out as its own compressed row group, never gathered into one table first."""
    import pyarrow.parquet as pq

    from townlet.persistence.reader import TelemetryReader
    from townlet.telemetry.columnar import write_parquet

    out = tmp_path / "run.parquet"
    with TelemetryReader(str(db)) as reader, out.open("wb") as handle:
        run = reader.run(None)
        write_parquet(((run.id, agents) for agents in reader.agent_column_batches(run, batch=batch)), handle)
        rows = run.episodes * run.num_agents
    metadata = pq.ParquetFile(out).metadata
    assert metadata.num_rows == rows
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert sizes == [batch] * (rows // batch) + ([rows % batch] if rows % batch else [])
    codecs = {metadata.row_group(i).column(j).compression for i in range(len(sizes)) for j in range(3)}
    assert codecs == {"ZSTD"}
