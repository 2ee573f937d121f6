"""Upgrading the committed revision-0002 database (written by townlet 0.3.0) to revision 0003 loses nothing.

Revision 0003 rebuilds the ``runs`` table on SQLite (its status CHECK constraint changes), which with
foreign keys on would cascade-delete every episode: these tests would see it. The fixture's replay, export and
runs outputs were captured by the 0.3.0 code (tests/fixtures/README.md).
"""

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from tests.helpers import (
    FIXTURES,
    LABELS_DROPPED,
    V1_FIXTURE,
    V2_FIXTURE,
    fixture_columns,
    fixture_copy,
    unlabelled_runs,
    v1_copy,
)
from townlet.persistence import migrate
from townlet.persistence.engine import database_url, make_engine
from townlet.wording import counted
from townlet_cli.app import app

runner = CliRunner()
V2_REPLAYS = (FIXTURES / "townlet_v2.replay.jsonl").read_bytes().splitlines(keepends=True)
V2_EXPORT = (FIXTURES / "townlet_v2.export.jsonl").read_bytes()
V2_RUNS = (FIXTURES / "townlet_v2.runs.json").read_bytes()
EPISODES = [(1, e) for e in range(1, 8)] + [(2, e) for e in range(1, 5)]  # the order of the replay file
TABLES = ("runs", "episodes", "agent_snapshots")


def ok(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True) as connection:  # creates no sidecars
        return connection.execute(sql).fetchall()


def everything(db: Path) -> dict[str, list[tuple]]:
    """Every row of the fixture's tables, in the fixture's columns (later revisions add some, e.g. runs.name)."""
    return {t: rows(db, f"SELECT {fixture_columns(V2_FIXTURE, t)} FROM {t} ORDER BY 1, 2") for t in TABLES}


def test_the_v2_fixture_is_the_file_the_0_3_0_code_wrote():
    digest = hashlib.sha256(V2_FIXTURE.read_bytes()).hexdigest()
    assert digest == "81450daacfa211606fbfa37d744b6fedefdf8c2d573ac9425af6b09d8edfa3c0"
    assert rows(V2_FIXTURE, "SELECT version_num FROM townlet_alembic_version") == [("0002",)]


@pytest.fixture
def upgraded(tmp_path) -> Path:
    db = fixture_copy(tmp_path, V2_FIXTURE)
    result = ok("db", "upgrade", "--db", str(db))
    assert "from revision 0002 (schema 2) to revision 0007 (schema 2)" in result.stderr
    return db


def test_upgrade_from_0002_keeps_every_row_and_adds_an_empty_checkpoints_table(upgraded):
    assert everything(upgraded) == everything(V2_FIXTURE)
    assert rows(upgraded, "SELECT count(*) FROM checkpoints") == [(0,)]
    assert rows(upgraded, "PRAGMA foreign_key_check") == []
    assert rows(upgraded, "PRAGMA journal_mode") == [("delete",)]  # at rest without sidecars, as before


def test_0002_episodes_replay_export_and_list_byte_identically_after_the_upgrade(upgraded):
    for (run, episode), before in zip(EPISODES, V2_REPLAYS, strict=True):
        after = ok("replay", "--run", str(run), "--episode", str(episode), "--json", "--db", str(upgraded))
        assert after.stdout_bytes == before
    exported = b"".join(ok("export", "-f", "jsonl", "--run", r, "--db", str(upgraded)).stdout_bytes for r in "12")
    assert exported == V2_EXPORT
    assert unlabelled_runs(ok("runs", "--json", "--db", str(upgraded)).stdout) == json.loads(V2_RUNS)


def test_the_new_states_are_allowed_after_the_upgrade_and_not_before(tmp_path, upgraded):
    with sqlite3.connect(upgraded) as connection:
        connection.execute("UPDATE runs SET status = 'interrupted' WHERE id = 2")
    old = fixture_copy(tmp_path, V2_FIXTURE, "old.db")
    with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"), sqlite3.connect(old) as connection:
        connection.execute("UPDATE runs SET status = 'interrupted' WHERE id = 2")


def test_v1_fixture_goes_to_head_in_two_steps_and_still_replays(tmp_path):
    db = v1_copy(tmp_path)
    first = ok("db", "upgrade", "--to", "0002", "--db", str(db))
    assert "from revision 0001 (schema 1) to revision 0002 (schema 2)" in first.stderr
    second = ok("db", "upgrade", "--db", str(db))
    assert "from revision 0002 (schema 2) to revision 0007 (schema 2)" in second.stderr
    columns = "episode_pk, agent_idx, schema_version, survival_steps, epsilon, curriculum_stage, death_cause"
    sql = f"SELECT {columns} FROM agent_snapshots ORDER BY 1, 2"
    assert rows(db, sql) == rows(V1_FIXTURE, sql)
    for table in ("runs", "episodes"):
        assert rows(db, f"SELECT {fixture_columns(V1_FIXTURE, table)} FROM {table} ORDER BY id") == rows(
            V1_FIXTURE, f"SELECT {fixture_columns(V1_FIXTURE, table)} FROM {table} ORDER BY id"
        )


def test_a_connection_with_foreign_keys_on_is_refused_before_the_runs_table_is_rebuilt(tmp_path):
    db = fixture_copy(tmp_path, V2_FIXTURE)
    engine = make_engine(database_url(str(db)), read_only=False)  # townlet's connections have foreign keys on
    try:
        with pytest.raises(RuntimeError, match="would delete every episode"), engine.begin() as connection:
            migrate.upgrade(connection, "head")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM episodes")).scalar_one() == 11
    finally:
        engine.dispose()
    assert everything(db) == everything(V2_FIXTURE)


def test_downgrade_to_0002_names_the_checkpoints_maps_the_states_back_and_backs_up_first(upgraded):
    ok("train", "--resume", "1", "--episodes", "2", "--device", "cpu", "--db", str(upgraded))
    with sqlite3.connect(upgraded) as connection:
        connection.execute("UPDATE runs SET status = 'interrupted' WHERE id = 1")
        connection.execute("UPDATE runs SET status = 'stale' WHERE id = 2")
    checkpoints = rows(upgraded, "SELECT count(*) FROM checkpoints")[0][0]
    recorded = [rows(upgraded, f"SELECT count(*) FROM {t}")[0][0] for t in ("recordings", "recording_agents")]
    assert checkpoints >= 1 and recorded[0] >= 1  # the resumed session recorded its last episode
    refused = runner.invoke(app, ["db", "downgrade", "0002", "--db", str(upgraded)])
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
    assert (
        LABELS_DROPPED
        + f"recordings ({counted(recorded[0], 'row')}), recording_agents ({counted(recorded[1], 'row')}), "
        "baseline_flags (0 rows), survival_blocks (0 rows), episode_rollups (13 rows), "
        f"checkpoints ({counted(checkpoints, 'row')})" in refused.stderr
    )
    assert "relabels runs.status interrupted as crashed, stale as running (2 rows)" in refused.stderr
    down = ok("db", "downgrade", "0002", "--db", str(upgraded), "--yes")
    (backup,) = upgraded.parent.glob("townlet.db.bak-0007-*")
    assert str(backup) in down.stderr
    assert rows(backup, "SELECT count(*) FROM checkpoints") == [(checkpoints,)]
    assert rows(upgraded, "SELECT version_num FROM townlet_alembic_version") == [("0002",)]
    assert rows(upgraded, "SELECT id, status FROM runs ORDER BY id") == [(1, "crashed"), (2, "running")]
    assert "checkpoints" not in {name for (name,) in rows(upgraded, "SELECT name FROM sqlite_master")}
    assert rows(upgraded, "SELECT count(*) FROM episodes") == [(13,)]
    ok("db", "upgrade", "--no-backup", "--db", str(upgraded))
    for (run, episode), before in zip(EPISODES, V2_REPLAYS, strict=True):
        after = ok("replay", "--run", str(run), "--episode", str(episode), "--json", "--db", str(upgraded))
        assert after.stdout_bytes == before
