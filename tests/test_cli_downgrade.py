"""``db downgrade`` drops data only when told to: it says what will be lost, with row counts, and asks first."""

import sqlite3

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


@pytest.mark.parametrize(
    ("revision", "lost"),
    [
        (
            "0001",
            "drops columns visits_bed, visits_shower, visits_fridge, visits_job, action_entropy of agent_snapshots "
            "(values in 6 rows)",
        ),
        ("base", "drops tables agent_snapshots (6 rows), episodes (2 rows), runs (1 rows)"),
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
    assert "drops tables agent_snapshots (6 rows), episodes (2 rows), runs (1 rows)" in result.stdout
    assert counts(trained) == {}


def test_downgrade_of_an_empty_schema_needs_no_confirmation(tmp_path):
    path = tmp_path / "t.db"
    assert runner.invoke(app, ["db", "upgrade", "--db", str(path)]).exit_code == 0
    result = runner.invoke(app, ["db", "downgrade", "base", "--db", str(path)])
    assert result.exit_code == 0, result.output
    assert "drops tables" in result.stdout and "no rows" in result.stdout


def test_sqlite_downgrade_keeps_a_backup_even_with_yes(tmp_path):
    path = tmp_path / "t.db"
    assert runner.invoke(app, [*TRAIN, "--db", str(path)]).exit_code == 0
    result = runner.invoke(app, ["db", "downgrade", "0001", "--db", str(path), "--yes"])
    assert result.exit_code == 0, result.output
    (backup,) = tmp_path.glob("t.db.bak-0002-*")
    rows = sqlite3.connect(backup).execute("SELECT count(visits_bed) FROM agent_snapshots").fetchone()[0]
    assert rows == 6


@pytest.mark.parametrize("revision", ["0002", "0001"])
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
