"""Upgrading the committed revision-0006 database (written by townlet 0.10.0) to revision 0007 adds run names
and tags, keeps every row, and every answer the 0.10.0 code gave, recordings and steps included, comes out
byte-identical (``runs --json`` gains each run's name and tags, null and empty); down to 0006 says how many
names and tags it drops, asks, and up again works."""

import hashlib

from typer.testing import CliRunner

from tests.helpers import FIXTURES, V6_FIXTURE, assert_fixture_answers, cli_ok, db_rows, fixture_columns, fixture_copy
from townlet_cli.app import app

runner = CliRunner()
ok, rows = cli_ok, db_rows
TABLES = ("runs", "episodes", "agent_snapshots", "checkpoints", "episode_rollups", "baseline_flags",
          "survival_blocks", "recordings", "recording_agents")  # fmt: skip


def test_the_v6_fixture_is_the_file_the_0_10_0_code_wrote():
    digest = hashlib.sha256(V6_FIXTURE.read_bytes()).hexdigest()
    assert digest == "9a1f2c110a02f9b60651410e4858c95a81742b6c45881383dcd42cc5125da2f4"
    assert rows(V6_FIXTURE, "SELECT version_num FROM townlet_alembic_version") == [("0006",)]


def test_upgrade_keeps_every_row_and_the_0_10_0_answers(tmp_path):
    db = fixture_copy(tmp_path, V6_FIXTURE)
    said = ok("db", "upgrade", "--db", str(db)).stderr
    assert "from revision 0006 (schema 2) to revision 0007 (schema 2)" in said
    for table in TABLES:
        kept = f"SELECT {fixture_columns(V6_FIXTURE, table)} FROM {table} ORDER BY 1, 2"
        assert rows(db, kept) == rows(V6_FIXTURE, kept), table
    assert rows(db, "SELECT count(*) FROM run_tags") == [(0,)] and rows(db, "SELECT name FROM runs") == [(None,)] * 2
    assert_fixture_answers(db, 6)
    flag = ("--db", str(db))
    recordings = [ok("recordings", "--run", r, "--json", *flag).stdout_bytes for r in "12"]
    assert b"".join(recordings) == (FIXTURES / "townlet_v6.recordings.jsonl").read_bytes()
    steps = (
        ok("replay", "--run", "1", "--episode", "7", "--steps", "--json", *flag).stdout_bytes
        + ok("replay", "--run", "2", "--episode", "3", "--steps", "--agent", "1", "--json", *flag).stdout_bytes
    )
    assert steps == (FIXTURES / "townlet_v6.steps.jsonl").read_bytes()


def test_down_to_0006_counts_the_names_and_tags_asks_then_up_again_works(tmp_path):
    db = fixture_copy(tmp_path, V6_FIXTURE)
    ok("db", "upgrade", "--no-backup", "--db", str(db))
    ok("runs", "tag", "1", "old", "sweep", "--db", str(db))
    ok("runs", "rename", "2", "second", "--db", str(db))
    refused = runner.invoke(app, ["db", "downgrade", "0006", "--no-backup", "--db", str(db)])
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
    assert "drops columns name of runs (values in 1 row); drops tables run_tags (2 rows)" in refused.stderr
    assert rows(db, "SELECT count(*) FROM run_tags") == [(2,)]
    ok("db", "downgrade", "0006", "--yes", "--no-backup", "--db", str(db))
    assert rows(db, "SELECT version_num FROM townlet_alembic_version") == [("0006",)]
    assert "name" not in fixture_columns(db, "runs")
    ok("db", "upgrade", "--no-backup", "--db", str(db))
    assert rows(db, "SELECT count(*) FROM run_tags") == [(0,)]
    assert_fixture_answers(db, 6)
