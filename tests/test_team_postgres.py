"""A team's PostgreSQL: many trainers at once, and a server that goes away and comes back mid-run.

Real ``train`` processes against real PostgreSQL 15 servers. The restart tests get a server of their own
(they stop it); the others share the session's server.
"""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from tests.helpers import LABELS_DROPPED, Lines, finished_registry, townlet, wait_for
from tests.postgres_server import PostgresServer, new_database, postgres_instance
from townlet.persistence.run_lock import RunBusy, RunLock
from townlet.persistence.store import EpisodeMeta, TelemetryStore
from townlet.persistence.writer import BackgroundWriter
from townlet.telemetry.payloads import build_agent_columns


def conninfo(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def query(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(conninfo(url), connect_timeout=5) as connection:
        return connection.execute(sql).fetchall()


def episodes(url: str, run: int = 1) -> list[int]:
    return [e for (e,) in query(url, f"SELECT episode FROM episodes WHERE run_id = {run} ORDER BY episode")]


def written(url: str) -> int:
    try:
        return query(url, "SELECT count(*) FROM episodes")[0][0]
    except psycopg.Error:  # the schema is not there yet, or the server is down
        return 0


def train(url: str, tmp_path: Path, *args: str, queue: int = 2) -> subprocess.Popen:
    settings = tmp_path / "queue.toml"
    settings.write_text(f"[training]\nwrite_queue = {queue}\n")
    return subprocess.Popen(
        [sys.executable, "-m", "townlet_cli", "train", "--agents", "2", "--device", "cpu", "--db", url,
         "--config", str(settings), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    with postgres_instance() as server:
        yield server


def training(server: PostgresServer, tmp_path: Path, processes: list, episodes: str) -> tuple[str, Lines]:
    """A trainer on a new database of ``server``, once it has written 3 episodes; its stdout as it comes."""
    url = new_database(server.url)
    proc = train(url, tmp_path, "--episodes", episodes)
    processes.append(proc)
    out = Lines(proc)
    wait_for(lambda: written(url) >= 3, "3 episodes written")
    return url, out


@pytest.mark.slow
def test_a_server_restart_mid_run_loses_nothing_and_the_trainer_keeps_its_run(own_server, tmp_path, processes):
    url, out = training(own_server, tmp_path, processes, "100000")
    proc = out.proc
    own_server.restart()  # pg_ctl stop -m fast + start: every connection is cut
    after = written(url)
    wait_for(lambda: written(url) >= after + 5, "5 more episodes written after the restart")
    # The trainer took its run lock again: the run is running, not stale, and cannot be resumed twice.
    assert json.loads(townlet("runs", "--json", "--db", url).stdout)[0]["status"] == "running"
    second = townlet("train", "--resume", "1", "--episodes", "1", "--device", "cpu", "--db", url)
    assert second.returncode == 2 and "is being trained by another process" in second.stderr
    proc.send_signal(signal.SIGINT)
    err = out.stderr(timeout=60)
    assert proc.returncode == 130, err
    stored = episodes(url)
    assert stored == list(range(1, len(stored) + 1))  # each exactly once, no gap
    assert f"run 1 interrupted: {len(stored)} episodes written" in out.text()
    assert query(url, "SELECT status FROM runs") == [("interrupted",)]


@pytest.mark.slow
def test_a_server_down_for_20_s_is_waited_out_with_back_pressure_and_every_episode_written_once(
    own_server, tmp_path, processes
):
    url, out = training(own_server, tmp_path, processes, "80")
    proc = out.proc
    own_server.stop()
    wait_for(lambda: out.has("training waits: database unavailable, "), "the trainer saying it waits")
    time.sleep(20)
    assert proc.poll() is None  # still waiting, not failed
    own_server.start()
    err = out.stderr(timeout=300)
    assert proc.returncode == 0, err
    assert episodes(url) == list(range(1, 81))
    assert query(url, "SELECT count(*) FROM agent_snapshots") == [(160,)]
    assert query(url, "SELECT status FROM runs") == [("finished",)]
    line = next(line for line in out.lines if "training waits: database unavailable" in line)
    assert "episodes queued, retrying (" in line


@pytest.mark.slow
def test_ctrl_c_during_an_outage_names_what_was_not_written_and_keeps_what_was(own_server, tmp_path, processes):
    url, out = training(own_server, tmp_path, processes, "100000")
    proc = out.proc
    own_server.stop()
    wait_for(lambda: out.has("training waits: database unavailable"), "the trainer saying it waits")
    proc.send_signal(signal.SIGINT)
    err = out.stderr(timeout=30)
    assert proc.returncode == 130, err
    assert err.count("interrupted by") == 1 and "Traceback" not in err and " not written" in err.splitlines()[-1]
    assert "episodes could not be written (the database stayed unavailable)" in out.text()
    assert "status could not be saved (database unavailable)" in out.text()
    own_server.start()
    stored = episodes(url)
    assert len(stored) >= 3 and stored == list(range(1, len(stored) + 1))  # nothing committed was lost
    assert f"{len(stored)} episodes written" in err
    assert json.loads(townlet("runs", "--json", "--db", url).stdout)[0]["status"] == "stale"  # its process is gone
    resumed = townlet("train", "--resume", "1", "--episodes", "2", "--device", "cpu", "--db", url)
    assert resumed.returncode == 0, resumed.stderr
    assert query(url, "SELECT status FROM runs") == [("finished",)]


@pytest.mark.slow
def test_eight_trainers_write_one_postgresql_database_at_once(postgres_base_url, tmp_path, processes):
    url = new_database(postgres_base_url)
    procs = [train(url, tmp_path, "--episodes", "5", "--seed", str(seed), queue=16) for seed in range(8)]
    processes.extend(procs)
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "error" not in err.lower()
    runs = query(url, "SELECT id, run_uuid, status FROM runs ORDER BY id")
    assert [r[0] for r in runs] == list(range(1, 9))
    assert len({r[1] for r in runs}) == 8 and {r[2] for r in runs} == {"finished"}
    for run in range(1, 9):
        assert episodes(url, run) == [1, 2, 3, 4, 5]
    assert query(url, "SELECT count(*) FROM agent_snapshots") == [(8 * 5 * 2,)]


@pytest.mark.slow
def test_every_db_command_runs_on_postgresql_from_townlet_db(postgres_base_url, tmp_path):
    url = new_database(postgres_base_url)
    env = {**os.environ, "TOWNLET_DB": url}

    def run(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "townlet_cli", *args], capture_output=True, text=True,
                              timeout=300, check=False, env=env, cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done

    assert "from empty (no schema yet) to revision 0007 (schema 2)" in run("db", "upgrade").stderr
    run("train", "--episodes", "2", "--agents", "2", "--device", "cpu")
    assert "revision 0007 (schema 2), up to date" in run("db", "current").stdout
    assert "models and migrations agree" in run("db", "check").stdout
    down = run("db", "downgrade", "0002", "--yes")
    assert (
        LABELS_DROPPED
        + "recordings (2 rows), recording_agents (4 rows), "
        "baseline_flags (0 rows), survival_blocks (0 rows), episode_rollups (2 rows), checkpoints (1 row)"
        in down.stderr
        and down.stdout == ""
    )
    assert "no backup of" in down.stderr and "pg_dump" in down.stderr  # said, not refused: --yes was given
    assert "revision 0002 (schema 2), this townlet needs revision 0007" in run("db", "current").stdout
    run("db", "upgrade")
    run("train", "--resume", "1", "--episodes", "1", "--device", "cpu")
    assert [e["episode"] for e in json.loads(run("episodes", "--run", "1", "--json").stdout)] == [1, 2, 3]
    assert list(tmp_path.iterdir()) == []  # nothing written beside it: it all went to the server


def _meta(episode: int) -> EpisodeMeta:
    now = datetime.now(UTC)
    return EpisodeMeta(episode, 10, 1, 0.1, now, now)


def _held_by_someone_else(url: str, run: int) -> bool:
    """Whether a second trainer would be refused the run (its lock is held by the writer under test)."""
    with TelemetryStore.open(url, write=False) as store:
        other = RunLock(store.url, run, store.label)
        try:
            other.acquire()
        except RunBusy:
            return True
        other.release()
        return False


@pytest.mark.slow
@pytest.mark.parametrize("when", ["idle", "writing"])
def test_the_run_lock_is_taken_again_before_the_first_write_after_any_server_restart(own_server, when):
    """Idle: the server restarts between two episodes and the next write reconnects without an error (the
    pool pings first), so only verifying the lock before each write notices. Writing: it restarts between the
    lock check and the write, which then fails and is retried."""
    url = new_database(own_server.url)
    columns = build_agent_columns(finished_registry(2).snapshot(), 1)
    restarts: list[str] = []
    with TelemetryStore.open(url, write=True) as store:
        lock_box: list[RunLock] = []
        run = store.create_run(
            run_uuid="c" * 32, seed=0, device="cpu", num_agents=2, config={},
            before_commit=lambda run: lock_box.append(RunLock(store.url, run, store.label).acquire()),
        )  # fmt: skip
        lock = lock_box[0]

        def before_write() -> None:
            lock.ensure()
            if when == "writing" and len(restarts) == 1:  # the second episode's first attempt: cut it off
                restarts.append("during the write")
                own_server.restart()

        writer = BackgroundWriter(store, run, before_write=before_write, guard=lock.require_held)
        try:
            writer.submit(_meta(1), columns)
            wait_for(lambda: writer.written == 1, "episode 1 written")
            assert _held_by_someone_else(url, run)
            restarts.append("while idle" if when == "idle" else "armed")
            if when == "idle":
                own_server.restart()
            writer.submit(_meta(2), columns)
            wait_for(lambda: writer.written == 2, "episode 2 written after the restart", timeout=60)
            assert (writer.retries == 0) == (when == "idle")  # idle: no failed write told anyone
            assert _held_by_someone_else(url, run)  # the lock was taken again before episode 2 went in
            writer.close()
        finally:
            writer.give_up()
            lock.release()
    assert [e for (e,) in query(url, "SELECT episode FROM episodes ORDER BY episode")] == [1, 2]


@pytest.mark.slow
def test_a_source_outage_during_db_copy_is_blamed_on_the_source(own_server, tmp_path):
    from tests.resume_reference import config
    from townlet.errors import TelemetryError
    from townlet.persistence.copy import copy_runs, plan_into, runs_to_copy
    from townlet.training.session import TrainingSession

    url = new_database(own_server.url)
    TrainingSession(config(2), db=url).run()
    with (
        TelemetryStore.open(url, write=False) as source,
        TelemetryStore.open(str(tmp_path / "dst.db"), write=True) as target,
    ):
        plan = plan_into(target, runs_to_copy(source, None), source.label)
        try:  # the server stops after the first batch of agent rows: both transactions are open then
            with pytest.raises(TelemetryError) as refused:
                copy_runs(source, target, plan, on_rows=lambda n: own_server.stop())
        finally:
            own_server.start()
    assert str(refused.value).startswith(f"cannot use database {source.label} ("), str(refused.value)
    assert target.label not in str(refused.value)
