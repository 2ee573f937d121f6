"""``db downgrade`` drops data only when told to: it says what will be lost, with row counts, and asks first."""

import os
import pty
import select
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from townlet.persistence import migrate
from townlet.persistence.engine import database_url, make_engine
from townlet_cli.app import app

runner = CliRunner()
TRAIN = ["train", "--episodes", "2", "--agents", "3", "--device", "cpu"]


def counts(db: str) -> dict[str, int]:
    engine = make_engine(database_url(db), read_only=True)
    try:
        with engine.connect() as connection:
            names = inspect(connection).get_table_names()
            return {
                name: connection.exec_driver_sql(f"SELECT count(*) FROM {name}").scalar_one()
                for name in names
                if name in ("runs", "episodes", "agent_snapshots")
            }
    finally:
        engine.dispose()


@pytest.fixture
def trained(db_url) -> str:
    result = runner.invoke(app, [*TRAIN, "--db", db_url])
    assert result.exit_code == 0, result.output
    return db_url


DROPS_ALL = (
    "drops tables run_tags (0 rows), recordings (2 rows), recording_agents (6 rows), baseline_flags (0 rows), "
    "survival_blocks (0 rows), "
    "episode_rollups (2 rows), checkpoints (1 row), "
    "agent_snapshots (6 rows), episodes (2 rows), "
    "runs (1 row)"
)


@pytest.mark.parametrize(
    ("revision", "lost"),
    [
        (
            "0001",
            "drops columns visits_bed, visits_shower, visits_fridge, visits_job, action_entropy of agent_snapshots "
            "(values in 6 rows)",
        ),
        (
            "base",
            DROPS_ALL,
        ),
    ],
)
def test_downgrade_that_drops_data_is_refused_without_yes(trained, revision, lost):
    before = counts(trained)
    result = runner.invoke(app, ["db", "downgrade", revision, "--db", trained, "--no-backup"])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1
    assert lost in result.stderr
    assert "pass --yes" in result.stderr
    if trained.startswith("postgresql"):
        assert "pg_dump" in result.stderr
    assert counts(trained) == before


def test_downgrade_with_yes_says_what_it_dropped(trained):
    result = runner.invoke(app, ["db", "downgrade", "base", "--db", trained, "--no-backup", "--yes"])
    assert result.exit_code == 0, result.output
    assert DROPS_ALL in result.stderr
    assert result.stdout == ""
    assert counts(trained) == {}


def test_downgrade_of_an_empty_schema_needs_no_confirmation(tmp_path):
    path = tmp_path / "t.db"
    assert runner.invoke(app, ["db", "upgrade", "--db", str(path)]).exit_code == 0
    result = runner.invoke(app, ["db", "downgrade", "base", "--db", str(path)])
    assert result.exit_code == 0, result.output
    assert "drops tables" in result.stderr and "no rows" in result.stderr


def test_sqlite_downgrade_keeps_a_backup_even_with_yes(tmp_path):
    path = tmp_path / "t.db"
    assert runner.invoke(app, [*TRAIN, "--db", str(path)]).exit_code == 0
    result = runner.invoke(app, ["db", "downgrade", "0001", "--db", str(path), "--yes"])
    assert result.exit_code == 0, result.output
    (backup,) = tmp_path.glob("t.db.bak-0007-*")
    rows = sqlite3.connect(backup).execute("SELECT count(visits_bed) FROM agent_snapshots").fetchone()[0]
    assert rows == 6


@pytest.mark.parametrize("revision", ["0007", "0006", "0005", "0004", "0003", "0002", "0001"])
def test_declared_losses_match_what_the_downgrade_really_drops(tmp_path, revision):
    """Each migration's DOWNGRADE_DROPS names exactly the tables and columns its downgrade removes."""
    path = tmp_path / "t.db"
    engine = create_engine(f"sqlite:///{path}")

    def schema() -> dict[str, set[str]]:
        with engine.connect() as connection:
            inspector = inspect(connection)
            return {t: {c["name"] for c in inspector.get_columns(t)} for t in inspector.get_table_names()}

    with engine.begin() as connection:
        migrate.upgrade(connection, revision)
    before = schema()
    with engine.begin() as connection:
        migrate.downgrade(connection, "-1")
    after = schema()
    engine.dispose()
    dropped_tables = {t for t in before if t not in after}
    dropped_columns = {t: before[t] - after[t] for t in after if before[t] - after[t]}
    declared = migrate.downgrade_drops(revision)
    assert {t for t, cols in declared.items() if cols is None} == dropped_tables
    assert {t: set(cols) for t, cols in declared.items() if cols is not None} == dropped_columns


def test_every_revision_declares_what_its_downgrade_drops():
    for revision in migrate.script_revisions():
        assert isinstance(migrate.downgrade_drops(revision), dict)


def _downgrade_on_a_terminal(db: Path, answer: bytes) -> tuple[int, str]:
    """Run `db downgrade base` with a real pseudo-terminal for stdin/stdout/stderr; type ``answer`` at the prompt."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "townlet_cli", "db", "downgrade", "base", "--db", str(db), "--no-backup"],
        stdin=slave, stdout=slave, stderr=slave, close_fds=True,
    )  # fmt: skip
    os.close(slave)
    seen, answered, deadline = b"", False, time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                seen += os.read(master, 4096)
            except OSError:
                break
        if not answered and b"Proceed?" in seen:
            os.write(master, answer)
            answered = True
    proc.wait(timeout=30)
    try:
        while select.select([master], [], [], 0.1)[0]:
            seen += os.read(master, 4096)
    except OSError:
        pass
    os.close(master)
    return proc.returncode, seen.decode(errors="replace")


@pytest.mark.parametrize(("answer", "code"), [(b"y\n", 0), (b"n\n", 2)])
def test_on_a_terminal_the_downgrade_asks_and_does_what_was_answered(tmp_path, answer, code):
    db = tmp_path / "t.db"
    assert runner.invoke(app, [*TRAIN, "--db", str(db)]).exit_code == 0
    returncode, shown = _downgrade_on_a_terminal(db, answer)
    assert returncode == code, shown
    assert DROPS_ALL in shown
    assert counts(str(db)) == ({} if code == 0 else {"runs": 1, "episodes": 2, "agent_snapshots": 6})
    if code == 2:
        assert "not confirmed, nothing changed" in shown
