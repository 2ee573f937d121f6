"""A refusal changes nothing: every refusal of ``train``, ``db copy``, ``db upgrade`` and ``db downgrade`` leaves
the SQLite files byte-identical (sha256 before and after), header and journal mode included, and is one line.
"""

import contextlib
import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.resume_reference import config
from townlet.persistence.revisions import VERSION_TABLE
from townlet.persistence.run_lock import RunLock
from townlet.persistence.store import TelemetryStore
from townlet.training.session import TrainingSession
from townlet_cli.app import app

runner = CliRunner()


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    """Run 1: 3 episodes, interrupted-free, with its checkpoint; at rest (rollback journal, no sidecars)."""
    db = tmp_path_factory.mktemp("refusals") / "t.db"
    assert TrainingSession(config(3), db=str(db)).run().status == "finished"
    return db


@pytest.fixture
def db(original, tmp_path) -> Path:
    copy = tmp_path / "t.db"
    shutil.copy(original, copy)
    return copy


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refused(args: list[str], *files: Path, expect: str) -> None:
    before = {path: sha256(path) for path in files}
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.output
    assert expect in " ".join(result.stderr.split())
    assert {path: sha256(path) for path in files} == before
    for path in files:
        assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name)) == [path.name]


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--resume", "99"], "no run 99 in"),
        (["--resume", "1", "--agents", "16"], "run 1 was trained with training.agents = 3, not 16"),
        (["--resume", "1", "--from-checkpoint", "2"], "run 1 has no checkpoint after episode 2"),
        (["--resume", "1", "--fresh-learner", "--from-checkpoint", "3"], "exclude each other"),
    ],
    ids=["unknown-run", "agents", "no-such-checkpoint", "both-choices"],
)
def test_a_refused_resume_leaves_the_file_byte_identical(db, args, expect):
    refused(["train", *args, "--db", str(db)], db, expect=expect)


def test_a_resume_whose_config_contradicts_the_run_leaves_the_file_byte_identical(db, tmp_path):
    other = tmp_path / "other.toml"
    other.write_text("[population]\ngamma = 0.5\n")
    refused(
        ["train", "--resume", "1", "--config", str(other), "--db", str(db)],
        db,
        expect="run 1 was trained with population.gamma = 0.98, not 0.5",
    )


def test_a_resume_of_a_run_being_trained_leaves_the_file_byte_identical(db):
    with TelemetryStore.open(str(db), write=False) as store, RunLock(store.url, 1, store.label):
        refused(["train", "--resume", "1", "--db", str(db)], db, expect="is being trained by another process")


def test_db_copy_onto_itself_and_onto_a_database_that_has_the_run_leaves_both_byte_identical(db, tmp_path):
    refused(["db", "copy", str(db), str(db)], db, expect="pass --skip-existing to copy only the others")
    other = tmp_path / "other.db"
    assert runner.invoke(app, ["db", "copy", str(db), str(other)]).exit_code == 0
    refused(["db", "copy", str(db), str(other)], db, other, expect="pass --skip-existing to copy only the others")


def _newer(db: Path) -> Path:
    with contextlib.closing(sqlite3.connect(db)) as connection, connection:
        connection.execute(f"UPDATE {VERSION_TABLE} SET version_num = '0099'")
    return db


def test_db_upgrade_and_downgrade_refusals_leave_the_file_byte_identical(db):
    refused(["db", "downgrade", "0042", "--db", str(db)], db, expect="unknown revision '0042'")
    refused(["db", "upgrade", "--to", "0042", "--db", str(db)], db, expect="unknown revision '0042'")
    lost = "baseline_flags (0 rows), survival_blocks (0 rows), episode_rollups (3 rows), checkpoints (1 row)"
    refused(["db", "downgrade", "0002", "--db", str(db)], db, expect=lost)
    _newer(db)
    refused(["db", "upgrade", "--db", str(db)], db, expect="newer than this townlet knows")
    refused(["db", "downgrade", "0002", "--db", str(db)], db, expect="newer than this townlet knows")


def test_a_downgrade_that_only_relabels_run_states_says_so_and_asks_first(db):
    with contextlib.closing(sqlite3.connect(db)) as connection, connection:
        connection.execute("DELETE FROM checkpoints")
        connection.execute("UPDATE runs SET status = 'interrupted'")
    refused(
        ["db", "downgrade", "0002", "--db", str(db), "--no-backup"],
        db,
        expect="relabels runs.status interrupted as crashed, stale as running (1 row)",
    )
