"""``townlet-telemetry db ...`` and the revision check every command runs, through the CLI runner."""

import hashlib
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import v1_copy
from townlet.persistence import revisions
from townlet_cli.app import app

runner = CliRunner()
TRAIN = ["train", "--episodes", "2", "--agents", "2", "--device", "cpu"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A database written by a short real training run (copied per test before use)."""
    path = tmp_path_factory.mktemp("trained") / "townlet.db"
    result = runner.invoke(app, [*TRAIN, "--db", str(path)])
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture
def db(trained, tmp_path) -> Path:
    copy = tmp_path / "townlet.db"
    shutil.copy(trained, copy)
    return copy


def one_line_error(result, starts: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {starts}"), result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_current_and_check_on_a_trained_database(db):
    before = digest(db)
    current = runner.invoke(app, ["db", "current", "--db", str(db)])
    assert current.exit_code == 0
    assert "revision 0007 (schema 2), up to date" in current.stdout
    check = runner.invoke(app, ["db", "check", "--db", str(db)])
    assert check.exit_code == 0
    assert "models and migrations agree" in check.stdout
    assert digest(db) == before


def test_db_option_reads_townlet_db_from_the_environment(db):
    result = runner.invoke(app, ["db", "current"], env={"TOWNLET_DB": str(db)})
    assert result.exit_code == 0
    assert str(db) in result.stdout


def test_upgrade_creates_a_new_database_and_is_idempotent(tmp_path):
    path = tmp_path / "new.db"
    first = runner.invoke(app, ["db", "upgrade", "--db", str(path)])
    assert first.exit_code == 0, first.output
    assert "from empty (no schema yet) to revision 0007 (schema 2)" in first.stderr and first.stdout == ""
    second = runner.invoke(app, ["db", "upgrade", "--db", str(path)])
    assert "already at revision 0007" in second.stderr


def test_downgrade_to_base_and_upgrade_again(tmp_path):
    path = tmp_path / "t.db"
    runner.invoke(app, ["db", "upgrade", "--db", str(path)])
    down = runner.invoke(app, ["db", "downgrade", "base", "--db", str(path)])
    assert down.exit_code == 0, down.output
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {revisions.VERSION_TABLE}
    assert runner.invoke(app, ["db", "upgrade", "--db", str(path)]).exit_code == 0


def test_downgrade_to_an_unknown_revision_is_a_usage_error(db):
    result = runner.invoke(app, ["db", "downgrade", "0042", "--db", str(db)])
    one_line_error(result, "unknown revision '0042': choose one of 0001, 0002, 0003, 0004, 0005, 0006, 0007, base")
    result = runner.invoke(app, ["db", "upgrade", "--to", "0042", "--db", str(db)])
    one_line_error(result, "unknown revision '0042': choose one of 0001, 0002, 0003, 0004, 0005, 0006, 0007, head")


def _set_revision(path: Path, revision: str) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute(f"UPDATE {revisions.VERSION_TABLE} SET version_num = ?", (revision,))
    sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()


@pytest.mark.parametrize("command", [["db", "check"], TRAIN])
def test_database_newer_than_the_code(db, command):
    _set_revision(db, "0099")
    before = digest(db)
    result = runner.invoke(app, [*command, "--db", str(db)])
    one_line_error(result, "database is at revision 0099, newer than this townlet (schema 2, revision 0007)")
    assert "upgrade townlet" in result.stderr
    assert digest(db) == before


OLDER_REFUSED = [
    ["db", "check"],
    TRAIN,
    ["runs"],
    ["episodes"],
    ["replay", "--episode", "1"],
    ["audit", "baselines"],
    ["audit", "rewards"],
    ["export", "--format", "csv"],
]


@pytest.mark.parametrize("command", OLDER_REFUSED, ids=lambda c: " ".join(c[:2]))
def test_database_older_than_the_code(tmp_path, command):
    db = v1_copy(tmp_path)
    before = digest(db)
    result = runner.invoke(app, [*command, "--db", str(db)])
    one_line_error(
        result,
        "database is at revision 0001 (schema 1), this townlet needs revision 0007 (schema 2): "
        f"run `townlet-telemetry db upgrade --db {db}`",
    )
    assert digest(db) == before


def test_foreign_sqlite_file(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    before = digest(path)
    for command in (["db", "check"], ["db", "current"], ["db", "upgrade"], TRAIN):
        result = runner.invoke(app, [*command, "--db", str(path)])
        one_line_error(result, f"{path} is not a townlet database")
    assert digest(path) == before


def test_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    before = digest(path)
    for command in (["db", "check"], ["db", "current"], TRAIN):
        result = runner.invoke(app, [*command, "--db", str(path)])
        one_line_error(result, f"{path} is not a SQLite database")
    assert digest(path) == before


def test_missing_file_for_a_read_is_an_error_and_creates_nothing(tmp_path):
    path = tmp_path / "missing.db"
    for command in (["db", "check"], ["db", "current"]):
        result = runner.invoke(app, [*command, "--db", str(path)])
        one_line_error(result, f"no database at {path}")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_bad_url_is_an_error(tmp_path):
    result = runner.invoke(app, ["db", "current", "--db", "nosuchdialect://x/y"])
    one_line_error(result, "townlet keeps telemetry in SQLite or PostgreSQL, not 'nosuchdialect' (nosuchdialect://x/y)")


def test_read_only_file_can_be_read(db):
    db.chmod(0o444)
    before = digest(db)
    result = runner.invoke(app, ["db", "check", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert digest(db) == before


@pytest.fixture
def unwritable(db):
    """The database file made unwritable: chmod for a user, the immutable attribute for root (who ignores chmod)."""
    db.chmod(0o444)
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(db)], check=True)
    yield db
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(db)], check=True)


def test_read_only_file_refuses_writes_in_one_line(unwritable):
    before = digest(unwritable)
    result = runner.invoke(app, [*TRAIN, "--db", str(unwritable)])
    one_line_error(result, f"cannot write {unwritable}")
    assert digest(unwritable) == before
