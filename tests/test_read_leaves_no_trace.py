"""Reading never changes anything on disk, works for any user who can read the file, and never locks the owner out."""

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from townlet.persistence.engine import database_url
from townlet.persistence.run_lock import RunLock
from townlet_cli.app import app

runner = CliRunner()
TRAIN = ["train", "--episodes", "2", "--agents", "2", "--device", "cpu"]
READS = [["runs"], ["episodes"], ["replay", "--episode", "1"], ["audit", "baselines"], ["db", "current"]]


def journal_mode(db: Path) -> str:
    """From the file header, without opening it through SQLite: 1 = rollback journal, 2 = WAL."""
    return {1: "delete", 2: "wal"}[db.read_bytes()[18]]


def test_a_finished_trainer_leaves_the_file_without_sidecars(tmp_path):
    db = tmp_path / "t.db"
    assert runner.invoke(app, [*TRAIN, "--db", str(db)]).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.db"]
    assert journal_mode(db) == "delete"


@pytest.mark.parametrize("command", READS, ids=lambda c: c[0] if len(c) == 1 else " ".join(c[:2]))
def test_a_read_on_a_fresh_database_creates_no_file(tmp_path, command):
    db = tmp_path / "t.db"
    assert runner.invoke(app, [*TRAIN, "--db", str(db)]).exit_code == 0
    before = db.read_bytes()
    result = runner.invoke(app, [*command, "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.db"]
    assert db.read_bytes() == before


def test_reading_while_a_trainer_has_the_file_open_sees_its_episodes(tmp_path):
    db = tmp_path / "t.db"
    assert runner.invoke(app, [*TRAIN, "--db", str(db)]).exit_code == 0
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("PRAGMA journal_mode = WAL")  # what a running trainer does
    writer.execute("UPDATE runs SET status = 'running'")
    try:
        with RunLock(database_url(str(db)), 1, str(db)):  # and it holds its run's lock
            result = runner.invoke(app, ["runs", "--json", "--db", str(db)])
        assert result.exit_code == 0, result.output
        assert '"status":"running"' in result.stdout
    finally:
        writer.close()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory outside pytest's private tmp (0700) that another user can enter; removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="townlet-shared-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def as_other_user() -> list[str]:
    """Run a command as another Unix user (nobody) where we can (root); otherwise as ourselves."""
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []


def read_as_other_user(db: Path, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*as_other_user(), sys.executable, "-m", "townlet_cli", *command, "--db", str(db)],
        capture_output=True, text=True, timeout=120, cwd="/",
    )  # fmt: skip


def test_another_user_reads_in_a_directory_they_cannot_write_and_the_owner_trains_on(shared_dir):
    db = shared_dir / "t.db"
    assert runner.invoke(app, [*TRAIN, "--db", str(db)]).exit_code == 0
    db.chmod(0o644)
    if os.geteuid() != 0:
        shared_dir.chmod(0o555)  # we cannot become another user: make the directory unwritable to us instead
    try:
        for command in (["runs"], ["replay", "--episode", "2"], ["export", "--format", "csv"]):
            result = read_as_other_user(db, *command)
            assert result.returncode == 0, result.stderr
            assert "readonly" not in result.stderr
    finally:
        shared_dir.chmod(0o755)
    assert sorted(p.name for p in shared_dir.iterdir()) == ["t.db"]
    again = runner.invoke(app, ["train", "--episodes", "1", "--device", "cpu", "--db", str(db), "--resume", "1"])
    assert again.exit_code == 0, again.output
    assert stat.S_IMODE(db.stat().st_mode) == 0o644


def test_another_user_reading_during_training_does_not_lock_the_owner_out(shared_dir):
    """The reader meets a WAL file (a trainer has it open): the sidecars it uses stay the owner's."""
    db = shared_dir / "t.db"
    assert runner.invoke(app, [*TRAIN, "--db", str(db)]).exit_code == 0
    trainer = sqlite3.connect(db, isolation_level=None)
    trainer.execute("PRAGMA journal_mode = WAL")
    trainer.execute("UPDATE runs SET status = 'running'")  # a trainer at work: its -wal and -shm are open
    try:
        result = read_as_other_user(db, "runs")
        assert result.returncode == 0, result.stderr
    finally:
        trainer.close()
    owners = {p.name: p.stat().st_uid for p in shared_dir.iterdir()}
    assert set(owners.values()) == {os.geteuid()}, owners
    again = runner.invoke(app, ["train", "--episodes", "1", "--device", "cpu", "--db", str(db), "--resume", "1"])
    assert again.exit_code == 0, again.output


def test_a_wal_file_at_rest_is_read_by_another_user_without_sidecars(shared_dir):
    """A file townlet 0.2 (or a killed trainer) left in WAL mode, in a directory the reader cannot write."""
    from tests.helpers import v1_copy

    db = v1_copy(shared_dir)
    db.chmod(0o644)
    assert journal_mode(db) == "wal"
    if os.geteuid() != 0:
        shared_dir.chmod(0o555)
    try:
        result = read_as_other_user(db, "db", "current")
    finally:
        shared_dir.chmod(0o755)
    assert result.returncode == 0, result.stderr
    assert "revision 0001 (schema 1)" in result.stdout
    assert sorted(p.name for p in shared_dir.iterdir()) == ["townlet.db"]


def test_db_upgrade_of_an_old_wal_file_leaves_no_sidecars(tmp_path):
    from tests.helpers import v1_copy

    db = v1_copy(tmp_path)
    result = runner.invoke(app, ["db", "upgrade", "--db", str(db), "--no-backup"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["townlet.db"]
