"""Run names and tags (revision 0007) and ``runs delete``: set by ``train`` and the ``runs`` subcommands,
filtered by ``runs``, refused in one line when bad, and a delete that says what goes, asks, backs up and
refuses a run being trained; ``train --seeds`` trains one tagged run per seed and stops them all on Ctrl-C."""

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from tests.helpers import cli_ok
from tests.postgres_server import new_database
from townlet.persistence.run_lock import RunLock
from townlet.persistence.store import TelemetryStore
from townlet_cli.app import app

runner = CliRunner()


def listed(db, *filters: str) -> list[tuple]:
    runs = json.loads(cli_ok("runs", "--json", *filters, "--db", str(db)).stdout)
    return [(r["id"], r["name"], r["tags"]) for r in runs]


def refused(args: list[str], says: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {says}"), result.stderr
    assert result.stderr.count("\n") == 1


@pytest.fixture
def three(tmp_path):
    db = tmp_path / "t.db"
    cli_ok("train", "-n", "2", "-a", "2", "-s", "0", "-d", "cpu", "--name", "Baseline lr", "--tag", "sweep",
           "--tag", "lr-1e-3", "--db", str(db))  # fmt: skip
    cli_ok("train", "-n", "2", "-a", "3", "-s", "1", "-d", "cpu", "--tag", "sweep", "--db", str(db))
    cli_ok("train", "-n", "3", "-a", "2", "-s", "2", "-d", "cpu", "--db", str(db))
    return db


def test_names_and_tags_are_stored_listed_filtered_and_changed(three):
    db = str(three)
    assert listed(db) == [(1, "Baseline lr", ["lr-1e-3", "sweep"]), (2, None, ["sweep"]), (3, None, [])]
    assert [r[0] for r in listed(db, "--tag", "lr-1e-3")] == [1]
    assert [r[0] for r in listed(db, "--tag", "lr-1e-3", "--tag", "sweep")] == [1, 2]  # any of them
    assert [r[0] for r in listed(db, "--name-like", "baseline")] == [1]
    assert [r[0] for r in listed(db, "--name-like", "b*LR")] == [1]
    assert [r[0] for r in listed(db, "--where", "training.agents=2")] == [1, 3]
    assert [r[0] for r in listed(db, "--where", "training.agents=2", "--tag", "sweep")] == [1]
    assert [r[0] for r in listed(db, "--where", "population.learning_rate=1e-3")] == [1, 2, 3]
    cli_ok("runs", "tag", "3", "late", "sweep", "--db", db)
    cli_ok("runs", "untag", "1", "sweep", "--db", db)
    cli_ok("runs", "rename", "2", "second", "--db", db)
    assert listed(db) == [(1, "Baseline lr", ["lr-1e-3"]), (2, "second", ["sweep"]), (3, None, ["late", "sweep"])]
    cli_ok("runs", "rename", "1", "", "--db", db)
    assert listed(db)[0][1] is None
    table = runner.invoke(app, ["runs", "--db", db], env={"COLUMNS": "200"}).stdout
    assert "second" in table and "late sweep" in table


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["runs", "tag", "1", "has space"], "tag 'has space' may hold only letters"),
        (["runs", "tag", "1", "x" * 65], "tag 'xxxxxxxxxxxxxxxxxxxx'... is 65 characters, at most 64"),
        (["runs", "rename", "1", "n" * 121], "run name is 121 characters, at most 120 are kept"),
        (["runs", "untag", "2", "lr-1e-3"], "run 2 is not tagged 'lr-1e-3' (its tags: sweep)"),
        (["runs", "tag", "9", "x"], "no run 9 in"),
        (["runs", "--tag", "nope"], "no run is tagged 'nope'"),
        (["runs", "--where", "training.agents"], "--where takes KEY=VALUE"),
        (["runs", "--where", "training.agentz=2"], "no run's config has the key 'training.agentz': did you mean"),
        (["train", "-n", "1", "--name", "n" * 121], "run name is 121 characters"),
        (["train", "-n", "1", "--seeds", "0,1,1"], "seed 1 appears twice in --seeds 0,1,1"),
        (["train", "-n", "1", "--seeds", "0-2", "--seed", "1"], "Invalid value: --seeds names every seed"),
        (["train", "-n", "1", "--parallel", "2"], "Invalid value: --parallel K trains K of --seeds"),
    ],
    ids=lambda v: "-".join(v)[:40] if isinstance(v, list) else None,
)
def test_bad_labels_and_filters_are_one_line_and_change_nothing(three, args, says):
    before = three.read_bytes()
    refused([*args, "--db", str(three)], says)
    assert three.read_bytes() == before


def counts(db) -> tuple[int, ...]:
    with sqlite3.connect(db) as c:
        tables = ("runs", "episodes", "agent_snapshots", "checkpoints", "recordings", "run_tags")
        return tuple(c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables)


def test_delete_says_what_goes_asks_backs_up_and_deletes_only_those_runs(three, tmp_path):
    db = str(three)
    before = counts(db)
    result = runner.invoke(app, ["runs", "delete", "1", "3", "--db", db])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert ("deleting run 1 (2 episodes, 4 agent rows, 1 checkpoint, 2 recordings); run 3 (3 episodes, 6 agent rows, "
            "1 checkpoint, 2 recordings)") in result.stderr and "pass --yes to proceed" in result.stderr  # fmt: skip
    assert counts(db) == before
    said = cli_ok("runs", "delete", "1", "3", "--yes", "--db", db).stderr
    assert "backed up" in said and "deleted 2 runs: 1, 3" in said
    assert [r[0] for r in listed(db)] == [2]
    assert counts(db) == (1, 2, 6, 1, 2, 1)
    (backup,) = tmp_path.glob("t.db.bak-runs-*")
    assert counts(backup) == before
    assert "every rollup" in cli_ok("db", "check", "--db", db).stdout


def test_delete_refuses_a_run_being_trained(three):
    with TelemetryStore.open(str(three), write=False) as store:
        lock = RunLock(store.url, 2, store.label).acquire()
    try:
        refused(["runs", "delete", "2", "--yes", "--db", str(three)], "run 2 is being trained by another process")
    finally:
        lock.release()
    assert [r[0] for r in listed(three)] == [1, 2, 3]


def test_seeds_train_one_tagged_run_each_in_parallel_and_ctrl_c_stops_them_all(tmp_path):
    db = tmp_path / "seeds.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "townlet_cli", "train", "--seeds", "0-2", "--parallel", "2", "-n", "500", "-a", "2",
         "-d", "cpu", "--name", "grid", "--db", str(db)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # both children have written an episode
            if db.exists():
                with sqlite3.connect(db) as c:
                    tables = {row[0] for row in c.execute("SELECT name FROM sqlite_master")}
                    if (
                        "episodes" in tables
                        and c.execute("SELECT count(DISTINCT run_id) FROM episodes").fetchone()[0] == 2
                    ):
                        break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    runs = json.loads(cli_ok("runs", "--json", "--db", str(db)).stdout)
    assert sorted((r["seed"], r["status"], r["name"]) for r in runs) == [
        (0, "interrupted", "grid"),
        (1, "interrupted", "grid"),
    ]
    (group,) = {tuple(r["tags"]) for r in runs}
    assert len(group) == 1 and group[0].startswith("seeds-")
    assert "[seed 0] " in err and "[seed 1] " in err and "not started after the signal: 1 seed (2)" in err
    assert f"compare them: townlet-telemetry compare --tag {group[0]}" in err


def pg_counts(url: str) -> tuple[int, ...]:
    with TelemetryStore.open(url, write=False) as store, store.transaction() as connection:
        tables = ("runs", "episodes", "agent_snapshots", "checkpoints", "recordings", "run_tags")
        return tuple(connection.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables)


def test_seeds_and_delete_on_postgresql(postgres_base_url):
    url = new_database(postgres_base_url)
    said = cli_ok("train", "--seeds", "0-2", "--parallel", "2", "-n", "2", "-a", "2", "-d", "cpu", "--db", url).stderr
    runs = json.loads(cli_ok("runs", "--json", "--db", url).stdout)
    assert sorted((r["seed"], r["status"]) for r in runs) == [(0, "finished"), (1, "finished"), (2, "finished")]
    (group,) = {tuple(r["tags"]) for r in runs}
    assert f"compare them: townlet-telemetry compare --tag {group[0]}" in said
    seed_1 = next(r["id"] for r in runs if r["seed"] == 1)
    before = pg_counts(url)
    asked = runner.invoke(app, ["runs", "delete", str(seed_1), "--db", url])
    assert asked.exit_code == 2 and asked.stderr.count("\n") == 1, asked.output
    assert f"deleting run {seed_1} (2 episodes, 4 agent rows, 1 checkpoint, 2 recordings)" in asked.stderr
    assert "pg_dump --format=custom" in asked.stderr and pg_counts(url) == before
    with TelemetryStore.open(url, write=False) as store:
        lock = RunLock(store.url, seed_1, store.label).acquire()
    try:
        refused(["runs", "delete", str(seed_1), "--yes", "--db", url], f"run {seed_1} is being trained by another")
    finally:
        lock.release()
    deleted = cli_ok("runs", "delete", str(seed_1), "--yes", "--db", url).stderr
    assert "back up a PostgreSQL database with pg_dump" in " ".join(deleted.split())
    assert sorted(r["seed"] for r in json.loads(cli_ok("runs", "--json", "--db", url).stdout)) == [0, 2]
    assert pg_counts(url) == (2, 4, 8, 2, 4, 2)
    assert "every rollup" in cli_ok("db", "check", "--db", url).stdout
