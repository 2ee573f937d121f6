"""Upgrading the committed revision-0005 database (written by townlet 0.9.0) to revision 0006 adds the recording
tables, keeps every row, and every answer the 0.9.0 code gave comes out byte-identical; resuming it records, and
down to 0005 says how many recordings it drops, asks, and up again works."""

import hashlib

from typer.testing import CliRunner

from tests.helpers import (
    ALL_MATCH,
    LABELS_DROPPED,
    V5_FIXTURE,
    assert_fixture_answers,
    cli_ok,
    db_rows,
    fixture_columns,
    fixture_copy,
)
from townlet_cli.app import app

runner = CliRunner()
ok, rows = cli_ok, db_rows
TABLES = ("runs", "episodes", "agent_snapshots", "checkpoints", "episode_rollups", "baseline_flags", "survival_blocks")


def test_the_v5_fixture_is_the_file_the_0_9_0_code_wrote():
    digest = hashlib.sha256(V5_FIXTURE.read_bytes()).hexdigest()
    assert digest == "37c91af355126142813928aa4c1d5a3fd282a6848bdf95d2a042608f2fe8d935"
    assert rows(V5_FIXTURE, "SELECT version_num FROM townlet_alembic_version") == [("0005",)]


def test_upgrade_keeps_every_row_and_the_0_9_0_answers(tmp_path):
    db = fixture_copy(tmp_path, V5_FIXTURE)
    said = ok("db", "upgrade", "--db", str(db)).stderr
    assert "from revision 0005 (schema 2) to revision 0007 (schema 2)" in said
    for table in TABLES:
        assert rows(db, f"SELECT {fixture_columns(V5_FIXTURE, table)} FROM {table} ORDER BY 1, 2") == rows(
            V5_FIXTURE, f"SELECT {fixture_columns(V5_FIXTURE, table)} FROM {table} ORDER BY 1, 2"
        )
    assert rows(db, "SELECT count(*) FROM recordings") == [(0,)]
    assert_fixture_answers(db, 5)
    assert ALL_MATCH in ok("db", "check", "--db", str(db)).stdout


def test_a_resumed_old_run_records_and_down_to_0005_asks_then_up_again_works(tmp_path):
    db = fixture_copy(tmp_path, V5_FIXTURE)
    ok("db", "upgrade", "--no-backup", "--db", str(db))
    old_learner = runner.invoke(app, ["train", "--resume", "2", "--episodes", "2", "--device", "cpu", "--db", str(db)])
    assert old_learner.exit_code == 2 and old_learner.stderr.count("\n") == 1, old_learner.output
    assert "has format 2: it holds the learner of townlet 0.11 or before" in " ".join(old_learner.stderr.split())
    ok("train", "--resume", "2", "--fresh-learner", "--episodes", "2", "--device", "cpu", "--db", str(db))
    assert rows(db, "SELECT e.run_id, e.episode, r.reasons FROM recordings r JOIN episodes e ON e.id = r.episode_pk"
                ) == [(2, 5, "session_last")]  # fmt: skip
    assert "1 recorded agent" not in ok("db", "check", "--db", str(db)).stdout  # both agents of run 2 checked
    refused = runner.invoke(app, ["db", "downgrade", "0005", "--no-backup", "--db", str(db)])
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
    assert LABELS_DROPPED + "recordings (1 row), recording_agents (2 rows): pass --yes" in refused.stderr
    assert rows(db, "SELECT count(*) FROM recordings") == [(1,)]  # nothing changed
    ok("db", "downgrade", "0005", "--yes", "--no-backup", "--db", str(db))
    assert rows(db, "SELECT version_num FROM townlet_alembic_version") == [("0005",)]
    ok("db", "upgrade", "--no-backup", "--db", str(db))
    assert rows(db, "SELECT count(*) FROM recordings") == [(0,)]
    assert ALL_MATCH in ok("db", "check", "--db", str(db)).stdout
