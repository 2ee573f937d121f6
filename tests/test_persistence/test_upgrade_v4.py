"""Upgrading the committed revision-0004 database (written by townlet 0.8.0) to revision 0005 backfills the
maintained baseline flags, keeps every row, and every answer the 0.8.0 code gave comes out byte-identical
(tests/fixtures/README.md says how the outputs were captured); older fixtures get the flags their scan raises."""

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
    V4_FIXTURE,
    assert_fixture_answers,
    cli_ok,
    db_rows,
    fixture_columns,
    fixture_copy,
    low_survivor,
)
from townlet.audit.baselines import Thresholds
from townlet.audit.reports import baselines_audits, scanned_flags
from townlet.persistence.blocks import blocks_select
from townlet.persistence.flags import flags_select
from townlet.persistence.reader import TelemetryReader
from townlet_cli.app import app

runner = CliRunner()
ok, rows = cli_ok, db_rows
TABLES = ("runs", "episodes", "agent_snapshots", "checkpoints", "episode_rollups")


def test_the_v4_fixture_is_the_file_the_0_8_0_code_wrote():
    digest = hashlib.sha256(V4_FIXTURE.read_bytes()).hexdigest()
    assert digest == "43c0b322b770e5e2a249e14a8f6db10ea5f4458fde50c5ff7f09dff2790d6a86"
    assert rows(V4_FIXTURE, "SELECT version_num FROM townlet_alembic_version") == [("0004",)]


@pytest.fixture
def upgraded(tmp_path) -> tuple[Path, str]:
    db = fixture_copy(tmp_path, V4_FIXTURE)
    result = ok("db", "upgrade", "--db", str(db))
    return db, result.stderr


def test_upgrade_backfills_the_flags_with_progress_and_keeps_every_row(upgraded):
    db, said = upgraded
    assert "backfilled the baseline flags of 10 of 10 episodes (27 agent rows)" in said
    assert "backfilled the survival blocks of 10 of 10 episodes (27 agent rows)" in said
    assert "from revision 0004 (schema 2) to revision 0007 (schema 2)" in said
    for table in TABLES:
        assert rows(db, f"SELECT {fixture_columns(V4_FIXTURE, table)} FROM {table} ORDER BY 1, 2") == rows(
            V4_FIXTURE, f"SELECT {fixture_columns(V4_FIXTURE, table)} FROM {table} ORDER BY 1, 2"
        )
    assert rows(db, "SELECT * FROM baseline_flags ORDER BY 1, 2, 3") == rows(
        db, flags_select("1 = 1") + " ORDER BY 1, 2, 3"
    )
    assert rows(db, "SELECT * FROM survival_blocks ORDER BY 1, 2, 3") == rows(
        db, blocks_select("1 = 1") + " ORDER BY 1, 2, 3"
    )
    assert ALL_MATCH in ok("db", "check", "--db", str(db)).stdout


def test_the_0_8_0_answers_come_out_byte_identical(upgraded):
    db, _ = upgraded
    assert_fixture_answers(db, 4)


@pytest.mark.parametrize("fixture", [V1_FIXTURE, V2_FIXTURE, V3_FIXTURE], ids=["v1", "v2", "v3"])
def test_older_fixtures_get_the_flags_their_scan_raises(tmp_path, fixture):
    db = fixture_copy(tmp_path, fixture)
    ok("db", "upgrade", "--db", str(db))
    assert ALL_MATCH in ok("db", "check", "--db", str(db)).stdout
    with TelemetryReader(str(db)) as reader:
        for run in reader.runs():
            scan = scanned_flags(baselines_audits(reader, run, Thresholds(), summary_bars=1))
            assert reader.baseline_flags(run) == scan


def test_downgrade_to_0004_drops_only_the_flags_and_upgrading_again_rebuilds_them(upgraded, tmp_path):
    db, _ = upgraded
    flagged = low_survivor(tmp_path / "flagged.db")  # a downgrade that drops flag rows asks first
    before = rows(flagged, "SELECT * FROM baseline_flags ORDER BY 1, 2, 3")
    refused = runner.invoke(app, ["db", "downgrade", "0004", "--db", str(flagged)])
    assert len(before) == 1
    assert (
        refused.exit_code == 2
        and LABELS_DROPPED
        + "recordings (0 rows), recording_agents (0 rows), baseline_flags (1 row), survival_blocks (0 rows)"
        in refused.stderr
    )
    down = ok("db", "downgrade", "0004", "--yes", "--no-backup", "--db", str(db))
    assert (
        LABELS_DROPPED
        + "recordings (0 rows), recording_agents (0 rows), baseline_flags (0 rows), survival_blocks (0 rows)"
        in down.stderr
    )
    for table in TABLES:
        assert rows(db, f"SELECT {fixture_columns(V4_FIXTURE, table)} FROM {table} ORDER BY 1, 2") == rows(
            V4_FIXTURE, f"SELECT {fixture_columns(V4_FIXTURE, table)} FROM {table} ORDER BY 1, 2"
        )
    ok("db", "downgrade", "0004", "--yes", "--no-backup", "--db", str(flagged))
    ok("db", "upgrade", "--no-backup", "--db", str(flagged))
    assert rows(flagged, "SELECT * FROM baseline_flags ORDER BY 1, 2, 3") == before
