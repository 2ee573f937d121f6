"""Upgrading the committed revision-0003 database (written by townlet 0.7.0) to revision 0004 backfills a rollup
for every episode, and every answer the 0.7.0 code gave by scanning agent rows comes out byte-identical from
the rollups (tests/fixtures/README.md says how the outputs were captured)."""

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import (
    ALL_MATCH,
    LABELS_DROPPED,
    V1_FIXTURE,
    V2_FIXTURE,
    V3_FIXTURE,
    assert_fixture_answers,
    cli_ok,
    db_rows,
    fixture_columns,
    fixture_copy,
)
from townlet.persistence.rollups import rollup_select

runner = CliRunner()
ok, rows = cli_ok, db_rows


def test_the_v3_fixture_is_the_file_the_0_7_0_code_wrote():
    digest = hashlib.sha256(V3_FIXTURE.read_bytes()).hexdigest()
    assert digest == "750f9ed6d38f83378515540bd1b7cad1186a7be5608099c890e90ea23944373d"
    assert rows(V3_FIXTURE, "SELECT version_num FROM townlet_alembic_version") == [("0003",)]


@pytest.fixture
def upgraded(tmp_path) -> tuple[Path, str]:
    db = fixture_copy(tmp_path, V3_FIXTURE)
    result = ok("db", "upgrade", "--db", str(db))
    return db, result.stderr


def test_upgrade_backfills_one_rollup_per_episode_with_progress_and_keeps_every_row(upgraded):
    db, said = upgraded
    assert "backfilled the rollups of 10 of 10 episodes (27 agent rows)" in said
    assert "from revision 0003 (schema 2) to revision 0007 (schema 2)" in said
    for table in ("runs", "episodes", "agent_snapshots", "checkpoints"):
        assert rows(db, f"SELECT {fixture_columns(V3_FIXTURE, table)} FROM {table} ORDER BY 1, 2") == rows(
            V3_FIXTURE, f"SELECT {fixture_columns(V3_FIXTURE, table)} FROM {table} ORDER BY 1, 2"
        )
    assert rows(db, "SELECT count(*) FROM episode_rollups") == [(10,)]
    assert rows(db, "SELECT * FROM episode_rollups ORDER BY 1") == rows(db, rollup_select("1 = 1") + " ORDER BY 1")
    assert ALL_MATCH in ok("db", "check", "--db", str(db)).stdout


def test_the_0_7_0_answers_come_out_byte_identical_from_the_rollups(upgraded):
    db, _ = upgraded
    assert_fixture_answers(db, 3)


@pytest.mark.parametrize("fixture", [V1_FIXTURE, V2_FIXTURE], ids=["v1", "v2"])
def test_older_fixtures_get_rollups_equal_to_their_scan(tmp_path, fixture):
    db = fixture_copy(tmp_path, fixture)
    ok("db", "upgrade", "--db", str(db))
    episodes = rows(db, "SELECT count(*) FROM episodes")
    assert rows(db, "SELECT count(*) FROM episode_rollups") == episodes
    assert rows(db, "SELECT * FROM episode_rollups ORDER BY 1") == rows(db, rollup_select("1 = 1") + " ORDER BY 1")


def test_downgrade_to_0003_drops_only_the_rollups_and_upgrading_again_rebuilds_them(upgraded):
    db, _ = upgraded
    before = rows(db, "SELECT * FROM episode_rollups ORDER BY 1")
    down = ok("db", "downgrade", "0003", "--yes", "--no-backup", "--db", str(db))
    assert (
        LABELS_DROPPED + "recordings (0 rows), recording_agents (0 rows), baseline_flags (0 rows), "
        "survival_blocks (0 rows), "
        "episode_rollups (10 rows)" in down.stderr
    )
    for table in ("runs", "episodes", "agent_snapshots", "checkpoints"):
        assert rows(db, f"SELECT {fixture_columns(V3_FIXTURE, table)} FROM {table} ORDER BY 1, 2") == rows(
            V3_FIXTURE, f"SELECT {fixture_columns(V3_FIXTURE, table)} FROM {table} ORDER BY 1, 2"
        )
    ok("db", "upgrade", "--no-backup", "--db", str(db))
    assert rows(db, "SELECT * FROM episode_rollups ORDER BY 1") == before
