"""Upgrading the committed schema-1 database (written by the version 1 code) loses nothing.

The fixture's replay, export and runs outputs were captured by the version 1 code when it wrote the file
(tests/fixtures/README.md); after the upgrade the same commands must print the same bytes for those rows.
"""

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import FIXTURES, V1_FIXTURE, fixture_columns, unlabelled_runs, v1_copy
from townlet_cli.app import app

runner = CliRunner()
V1_REPLAYS = (FIXTURES / "townlet_v1.replay.jsonl").read_bytes().splitlines(keepends=True)
V1_EXPORT = (FIXTURES / "townlet_v1.export.jsonl").read_bytes()
V1_RUNS = json.loads((FIXTURES / "townlet_v1.runs.json").read_text())
EPISODES = [(1, e) for e in range(1, 7)] + [(2, e) for e in range(1, 3)]  # the order of the replay file


def ok(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def rows(db: Path, sql: str = "SELECT * FROM agent_snapshots ORDER BY episode_pk, agent_idx") -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True) as connection:  # creates no sidecars
        return connection.execute(sql).fetchall()


V1_COLUMNS = (
    "episode_pk, agent_idx, schema_version, survival_steps, baseline_survival_steps, episode_reward, epsilon, "
    "curriculum_stage, death_cause, meter_energy, meter_hygiene, meter_satiation, meter_money"
)
V1_ROWS_SQL = f"SELECT {V1_COLUMNS} FROM agent_snapshots ORDER BY episode_pk, agent_idx"


def test_the_v1_fixture_is_the_file_the_v1_code_wrote():
    # tests/fixtures/README.md records this digest: the fixture is never regenerated or modified.
    digest = hashlib.sha256(V1_FIXTURE.read_bytes()).hexdigest()
    assert digest == "2d8fc3938838022c5136cc9308a8255cdba9b2f986e2af53b64897e1729d47e0"


@pytest.fixture
def upgraded(tmp_path) -> Path:
    db = v1_copy(tmp_path)
    result = ok("db", "upgrade", "--db", str(db))
    assert "from revision 0001 (schema 1) to revision 0007 (schema 2)" in result.stderr
    return db


def test_upgrade_from_v1_keeps_every_row(upgraded):
    assert rows(upgraded, V1_ROWS_SQL) == rows(V1_FIXTURE, V1_ROWS_SQL)
    for table in ("runs", "episodes"):
        assert rows(upgraded, f"SELECT {fixture_columns(V1_FIXTURE, table)} FROM {table} ORDER BY id") == rows(
            V1_FIXTURE, f"SELECT {fixture_columns(V1_FIXTURE, table)} FROM {table} ORDER BY id"
        )
    new = rows(
        upgraded, "SELECT visits_bed, visits_shower, visits_fridge, visits_job, action_entropy FROM agent_snapshots"
    )
    assert len(new) == 22 and set(new) == {(None,) * 5}
    assert {v for (v,) in rows(upgraded, "SELECT schema_version FROM agent_snapshots")} == {1}


def test_v1_episodes_replay_byte_identically_after_the_upgrade(upgraded):
    for (run, episode), before in zip(EPISODES, V1_REPLAYS, strict=True):
        after = ok("replay", "--run", str(run), "--episode", str(episode), "--json", "--db", str(upgraded))
        assert after.stdout_bytes == before
        assert json.loads(after.stdout)["schema_version"] == 1


def test_export_and_runs_are_unchanged_by_the_upgrade(upgraded):
    exported = b"".join(ok("export", "-f", "jsonl", "--run", r, "--db", str(upgraded)).stdout_bytes for r in "12")
    assert exported == V1_EXPORT
    assert unlabelled_runs(ok("runs", "--json", "--db", str(upgraded)).stdout) == V1_RUNS


def test_upgrade_writes_a_backup_that_is_itself_a_valid_v1_database(tmp_path):
    db = v1_copy(tmp_path)
    result = ok("db", "upgrade", "--db", str(db))
    backups = sorted(tmp_path.glob("townlet.db.bak-0001-*"))
    assert len(backups) == 1 and str(backups[0]) in result.stderr
    assert backups[0].name.endswith("Z") and len(backups[0].name) == len("townlet.db.bak-0001-20261125T133000Z")
    current = ok("db", "current", "--db", str(backups[0]))
    assert "revision 0001 (schema 1), this townlet needs revision 0007" in current.stdout
    assert rows(backups[0]) == rows(V1_FIXTURE)
    assert rows(backups[0], "SELECT * FROM runs") == rows(V1_FIXTURE, "SELECT * FROM runs")


def test_no_backup_skips_the_copy(tmp_path):
    db = v1_copy(tmp_path)
    result = ok("db", "upgrade", "--no-backup", "--db", str(db))
    assert "--no-backup" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["townlet.db"]


def test_nothing_to_upgrade_takes_no_backup(upgraded):
    ok("db", "upgrade", "--db", str(upgraded))
    assert len(list(upgraded.parent.glob("*.bak-*"))) == 1  # the one from the real upgrade only


def test_new_training_appends_v2_rows_to_the_same_run_history(upgraded):
    ok("train", "--resume", "1", "--episodes", "2", "--device", "cpu", "--db", str(upgraded))
    assert [r["episode"] for r in json.loads(ok("episodes", "--run", "1", "--json", "--db", str(upgraded)).stdout)] == [
        1, 2, 3, 4, 5, 6, 7, 8,
    ]  # fmt: skip
    old = json.loads(ok("replay", "--run", "1", "--episode", "6", "--json", "--db", str(upgraded)).stdout)
    new = json.loads(ok("replay", "--run", "1", "--episode", "7", "--json", "--db", str(upgraded)).stdout)
    assert (old["schema_version"], new["schema_version"]) == (1, 2)
    assert "visits_bed" not in old["agents"][0] and "action_entropy" in new["agents"][0]
    assert ok("replay", "--run", "1", "--episode", "6", "--json", "--db", str(upgraded)).stdout_bytes == V1_REPLAYS[5]
    # Export spans both versions: V1 rows leave the V2 columns empty.
    lines = ok("export", "-f", "csv", "--run", "1", "--db", str(upgraded)).stdout.splitlines()
    header = lines[0].split(",")
    assert len(lines) == 1 + 8 * 3
    first, last = (
        dict(zip(header, lines[1].split(","), strict=True)),
        dict(zip(header, lines[-1].split(","), strict=True)),
    )
    assert (first["schema_version"], first["visits_bed"], first["action_entropy"]) == ("1", "", "")
    assert last["schema_version"] == "2" and last["action_entropy"] != ""
    assert "every reward matches" in ok("audit", "rewards", "--run", "1", "--db", str(upgraded)).stdout


def test_downgrade_to_0001_and_upgrade_again_keeps_v1_data(upgraded):
    ok("train", "--resume", "1", "--episodes", "1", "--device", "cpu", "--db", str(upgraded))
    down = ok("db", "downgrade", "0001", "--db", str(upgraded), "--yes")
    assert "to 0001" in down.stderr
    columns = {r[1] for r in rows(upgraded, "PRAGMA table_info(agent_snapshots)")}
    assert not {"visits_bed", "visits_shower", "visits_fridge", "visits_job", "action_entropy"} & columns
    assert rows(upgraded, V1_ROWS_SQL)[:22] == rows(V1_FIXTURE, V1_ROWS_SQL)  # the fixture's rows, untouched
    assert {v for (v,) in rows(upgraded, "SELECT schema_version FROM agent_snapshots")} == {1}  # V2 rows relabelled
    ok("db", "upgrade", "--no-backup", "--db", str(upgraded))
    exported = b"".join(ok("export", "-f", "jsonl", "--run", r, "--db", str(upgraded)).stdout_bytes for r in "12")
    lines, v1_lines = exported.splitlines(keepends=True), V1_EXPORT.splitlines(keepends=True)
    assert len(lines) == len(v1_lines) + 3  # one more episode of run 1's three agents
    assert lines[:18] == v1_lines[:18] and lines[21:] == v1_lines[18:]  # every fixture row, byte-identical
    for (run, episode), before in zip(EPISODES, V1_REPLAYS, strict=True):
        after = ok("replay", "--run", str(run), "--episode", str(episode), "--json", "--db", str(upgraded))
        assert after.stdout_bytes == before


def test_audit_visits_leaves_v1_episodes_out_instead_of_reading_them_as_zero(upgraded):
    before = json.loads(ok("audit", "visits", "--run", "1", "--json", "--db", str(upgraded)).stdout)
    assert before["episodes_without_visits"] == 6
    assert all(a["episodes"] == [] for a in before["agents"])
    assert "6 episodes written under schema version 1 have no visit counts" in (
        ok("audit", "visits", "--run", "1", "--db", str(upgraded)).stdout
    )
    ok("train", "--resume", "1", "--episodes", "2", "--device", "cpu", "--db", str(upgraded))
    after = json.loads(ok("audit", "visits", "--run", "1", "--json", "--db", str(upgraded)).stdout)
    assert after["episodes_without_visits"] == 6
    assert all(a["episodes"] == [7, 8] for a in after["agents"])
    entropy = json.loads(ok("audit", "baselines", "--run", "1", "--json", "--db", str(upgraded)).stdout)
    assert all(a["action_entropy"][:6] == [None] * 6 and None not in a["action_entropy"][6:] for a in entropy["agents"])
