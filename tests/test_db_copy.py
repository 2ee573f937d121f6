"""``db copy SRC DST``: runs move between databases whole, and read back byte-identically.

``db copy`` and ``train`` run as real processes; the many read-backs compared run in-process (the same
commands, the same stdout bytes, a second each saved). The copied run also resumes where it stopped.
"""

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from tests.helpers import ALL_MATCH, V2_FIXTURE, fixture_copy, low_survivor, tamper, townlet
from tests.postgres_server import new_database
from townlet.persistence.rollups import ROLLUP_COLUMNS
from townlet_cli.app import app


def ok(*args: str) -> subprocess.CompletedProcess:
    result = townlet(*args)
    assert result.returncode == 0, result.stderr
    return result


def refused(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr


def read(*args: str) -> bytes:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def outputs(db: str, runs: dict[int, int]) -> dict[str, bytes]:
    """Every read-back of the runs (original id -> id in ``db``): replays, export, audits, run rows."""
    found: dict[str, bytes] = {}
    for original, run in runs.items():
        found[f"export {original}"] = read("export", "-f", "jsonl", "--run", str(run), "--db", db)
        for audit in ("baselines", "rewards", "visits"):
            found[f"audit {audit} {original}"] = read("audit", audit, "--run", str(run), "--json", "--db", db)
        found[f"episodes {original}"] = read("episodes", "--run", str(run), "--json", "--db", db)
        for episode in (1, 2, 3):
            found[f"replay {original}/{episode}"] = read(
                "replay", "--run", str(run), "--episode", str(episode), "--json", "--db", db
            )
        listed = json.loads(read("recordings", "--run", str(run), "--json", "--db", db))["recordings"]
        assert listed, "every session records its last episode"
        found[f"recordings {original}"] = json.dumps(listed).encode()
        for recording in listed:
            episode = str(recording["episode"])
            for agent in ("0", "1"):
                found[f"steps {original}/{episode}/{agent}"] = read(
                    "replay", "--run", str(run), "-e", episode, "--steps", "--agent", agent, "--json", "--db", db
                )
    return found


def checkpoints(db: Path) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        return connection.execute(
            "SELECT episode, created_at, format_version, device, size_bytes, blob FROM checkpoints "
            "ORDER BY run_id, episode"
        ).fetchall()


def counts(db: Path) -> list[int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        tables = ("runs", "episodes", "agent_snapshots", "checkpoints")
        return [connection.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables]


@pytest.fixture(scope="module")
def laptop(tmp_path_factory) -> Path:
    """A SQLite file with two runs: one trained then resumed, one stopped early."""
    db = tmp_path_factory.mktemp("laptop") / "laptop.db"
    ok("train", "--episodes", "3", "--agents", "3", "--device", "cpu", "--db", str(db))
    ok("train", "--resume", "1", "--episodes", "2", "--device", "cpu", "--db", str(db))
    ok("train", "--episodes", "4", "--agents", "2", "--seed", "5", "--device", "cpu", "--db", str(db))
    return db


@pytest.mark.slow
def test_sqlite_to_postgresql_and_back_reads_byte_identically(laptop, postgres_base_url, tmp_path):
    before = outputs(str(laptop), {1: 1, 2: 2})
    runs_before = read("runs", "--json", "--db", str(laptop))
    team = new_database(postgres_base_url)
    to_team = ok("db", "copy", str(laptop), team)
    assert "2 runs, 23 agent rows copied" in to_team.stderr
    assert outputs(team, {1: 1, 2: 2}) == before
    assert read("runs", "--json", "--db", team) == runs_before
    back = tmp_path / "back.db"
    ok("db", "copy", team, str(back))
    assert outputs(str(back), {1: 1, 2: 2}) == before
    assert read("runs", "--json", "--db", str(back)) == runs_before
    assert checkpoints(back) == checkpoints(laptop)
    assert rollups(back) == rollups(laptop)  # carried there and back with their rows, value for value
    for db in (team, str(back)):
        assert ALL_MATCH in ok("db", "check", "--db", db).stdout


def rollups(db: Path) -> list[tuple]:
    """Every rollup row without its episode key, in run and episode order."""
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return connection.execute(
            f"SELECT e.run_id, e.episode, {', '.join('r.' + c for c in ROLLUP_COLUMNS[1:])} FROM episode_rollups r "
            "JOIN episodes e ON e.id = r.episode_pk "
            "ORDER BY e.run_id, e.episode"
        ).fetchall()
    finally:
        connection.close()


def test_sqlite_to_sqlite_reads_byte_identically(laptop, tmp_path):
    """File to file the destination attaches the source and copies rows and rollups by SQL: the same answers."""
    copy = tmp_path / "copy.db"
    assert "2 runs, 23 agent rows copied" in ok("db", "copy", str(laptop), str(copy)).stderr
    assert outputs(str(copy), {1: 1, 2: 2}) == outputs(str(laptop), {1: 1, 2: 2})
    assert read("runs", "--json", "--db", str(copy)) == read("runs", "--json", "--db", str(laptop))
    assert checkpoints(copy) == checkpoints(laptop) and rollups(copy) == rollups(laptop)
    assert counts(copy) == counts(laptop)
    assert ALL_MATCH in ok("db", "check", "--db", str(copy)).stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.db"]  # nothing attached is left open


def flags(db: Path) -> list[tuple]:
    """Every baseline flag without its episode key, in run, episode and agent order."""
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return connection.execute(
            "SELECT e.run_id, e.episode, f.agent_idx, f.kind, f.stage, f.baseline, f.other, f.since "
            "FROM baseline_flags f JOIN episodes e ON e.id = f.episode_pk ORDER BY 1, 2, 3, 4"
        ).fetchall()
    finally:
        connection.close()


def blocks(db: Path) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        return connection.execute("SELECT * FROM survival_blocks ORDER BY 1, 2, 3").fetchall()


@pytest.mark.slow
def test_baseline_flags_and_survival_blocks_go_with_their_run_file_to_file_and_through_postgresql(
    postgres_base_url, tmp_path
):
    source = low_survivor(tmp_path / "flagged.db", episodes=17)  # one complete survival block, too
    assert flags(source) == [(1, 5, 0, 2, 1, 100.0, None, 1)]
    assert blocks(source) == [(1, 0, 0, 16, 160.0)]
    ok("db", "copy", str(source), str(tmp_path / "copy.db"))
    team = new_database(postgres_base_url)
    ok("db", "copy", str(source), team)
    ok("db", "copy", team, str(tmp_path / "back.db"))
    assert flags(tmp_path / "copy.db") == flags(tmp_path / "back.db") == flags(source)
    assert blocks(tmp_path / "copy.db") == blocks(tmp_path / "back.db") == blocks(source)
    for db in (team, str(tmp_path / "back.db")):
        assert ALL_MATCH in ok("db", "check", "--db", db).stdout


def test_a_source_whose_rollups_miscount_its_rows_is_refused_and_nothing_of_the_run_is_copied(laptop, tmp_path):
    damaged = tmp_path / "damaged.db"
    ok("db", "copy", str(laptop), str(damaged))
    tamper(damaged, "UPDATE episode_rollups SET agents = agents + 1 WHERE episode_pk = 2")  # an episode of run 1
    dst = tmp_path / "dst.db"
    refused(townlet("db", "copy", str(damaged), str(dst)), "run 1 of", "were read", "db check --repair")
    assert counts(dst) == [0, 0, 0, 0]


def test_a_run_already_there_is_refused_unless_skipped(laptop, tmp_path):
    dst = tmp_path / "dst.db"
    ok("db", "copy", str(laptop), str(dst), "--run", "2")
    before = counts(dst)
    refused(townlet("db", "copy", str(laptop), str(dst)), "run 2 of", "is already in", "as run 1", "--skip-existing")
    assert counts(dst) == before == [1, 4, 8, 1]  # nothing of run 1 was copied before the refusal
    skipped = ok("db", "copy", str(laptop), str(dst), "--skip-existing")
    assert "copied run 1 of" in skipped.stderr and "to run 2 of" in skipped.stderr
    assert "skipped run 2:" in skipped.stderr and "already has it as run 1" in skipped.stderr
    copied, original = outputs(str(dst), {1: 2, 2: 1}), outputs(str(laptop), {1: 1, 2: 2})
    same = [key for key in original if key.startswith("replay")]  # audit, export, episodes: the run's new id
    assert [copied[key] for key in same] == [original[key] for key in same]


def test_a_copied_run_resumes_from_its_checkpoint(laptop, tmp_path):
    dst = tmp_path / "dst.db"
    ok("db", "copy", str(laptop), str(dst), "--run", "1")
    resumed = ok("train", "--resume", "1", "--episodes", "1", "--device", "cpu", "--db", str(dst))
    assert "learner restored from the checkpoint after episode 5" in resumed.stderr


def test_databases_at_another_revision_or_unknown_runs_are_refused_naming_the_fix(laptop, tmp_path):
    old = fixture_copy(tmp_path, V2_FIXTURE, "old.db")
    refused(townlet("db", "copy", str(old), str(tmp_path / "new.db")), "this townlet needs revision 0007", "db upgrade")
    refused(townlet("db", "copy", str(laptop), str(old)), "this townlet needs revision 0007", f"--db {old}")
    refused(townlet("db", "copy", str(laptop), str(tmp_path / "new.db"), "--run", "9"), "no run 9 in")
    assert not (tmp_path / "new.db").exists()  # refused before the destination was created


def test_a_run_being_trained_is_refused_and_dst_is_not_created(db_url, tmp_path):
    """A trainer holds the run's lock (SQLite or PostgreSQL alike): a copy would be a snapshot of a moving run."""
    from tests.resume_reference import config
    from townlet.persistence.run_lock import RunLock
    from townlet.persistence.store import TelemetryStore
    from townlet.training.session import TrainingSession

    TrainingSession(config(1), db=db_url).run()
    with TelemetryStore.open(db_url, write=True) as store, store.transaction() as connection:
        connection.execute(text("UPDATE runs SET status = 'running'"))
    dst = tmp_path / "dst.db"
    with TelemetryStore.open(db_url, write=False) as store, RunLock(store.url, 1, store.label):
        refused(townlet("db", "copy", db_url, str(dst)), "run 1 in", "is being trained now: copy it once it has")
    assert not dst.exists()
    ok("db", "copy", db_url, str(dst))  # once nobody trains it (it is then stale), it copies


def test_a_file_to_file_copy_leaves_foreign_keys_on_and_nothing_attached(laptop, tmp_path):
    """The attached copy switches foreign key checks off for its own transaction only: a later delete on the
    same pooled connection still cascades (``--resume`` relies on it)."""
    from townlet.persistence.copy import copy_runs, plan_into, runs_to_copy
    from townlet.persistence.store import TelemetryStore

    with (
        TelemetryStore.open(str(laptop), write=False) as src,
        TelemetryStore.open(str(tmp_path / "d.db"), write=True) as dst,
    ):
        copy_runs(src, dst, plan_into(dst, runs_to_copy(src, [1]), src.label))
        with dst.transaction() as c:
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert "townlet_source" not in [row[1] for row in c.exec_driver_sql("PRAGMA database_list")]
