"""Faults are waited out, not fatal; data is written exactly once: real train processes, real SQLite locks."""

import contextlib
import os
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import Lines, wait_for
from tests.test_persistence.test_training_db import config, episodes_of, run_status, written_so_far
from townlet.persistence.errors import DatabaseRetryable
from townlet.persistence.store import TelemetryStore
from townlet.persistence.writer import BackgroundWriter
from townlet.training.session import TrainingSession, episode_meta


def _train(db: Path, *extra: str, queue: int = 2) -> subprocess.Popen:
    cfg = db.parent / "queue.toml"
    cfg.write_text(f"[training]\nwrite_queue = {queue}\n")
    return subprocess.Popen(
        [sys.executable, "-m", "townlet_cli", "train", "--agents", "2", "--device", "cpu", "--db", str(db),
         "--config", str(cfg), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=db.parent,
        env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip


def _training(db: Path, processes: list, *extra: str, queue: int = 2) -> "Lines":
    """A real trainer on ``db``, once it has committed two episodes; its stdout, read as it comes."""
    proc = _train(db, *extra, queue=queue)
    processes.append(proc)
    out = Lines(proc)
    wait_for(lambda: written_so_far(db) >= 2, "two episodes written")
    return out


@contextmanager
def _write_lock_held(db: Path, out: "Lines") -> Iterator[None]:
    """Another process's view: SQLite's write lock held on ``db`` until the block ends, once the trainer
    whose output is ``out`` says it waits for it."""
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute("PRAGMA busy_timeout = 60000")
        holder.execute("BEGIN IMMEDIATE")
        wait_for(lambda: out.has("training waits: database busy"), "the trainer saying it waits")
        yield
    finally:
        holder.rollback()
        holder.close()


@pytest.mark.slow
def test_a_lock_held_past_the_busy_timeout_is_waited_out_and_every_episode_written_once(tmp_path, processes):
    db = tmp_path / "t.db"
    out = _training(db, processes, "--episodes", "40")
    proc = out.proc
    with _write_lock_held(db, out):
        time.sleep(1.0)  # past the writer's per-attempt busy timeout, several retries
        held_at = written_so_far(db)
    proc.wait(timeout=300)
    err = out.stderr()
    assert proc.returncode == 0, err
    assert held_at < 40
    assert episodes_of(db) == [(e, 2) for e in range(1, 41)]
    assert run_status(db) == "finished"
    assert "run 1 finished: 40 episodes written" in out.text()


@pytest.mark.slow
def test_ctrl_c_while_the_database_is_locked_exits_promptly_naming_what_was_not_written(tmp_path, processes):
    db = tmp_path / "t.db"
    out = _training(db, processes, "--episodes", "10000")
    proc = out.proc
    with _write_lock_held(db, out):
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)  # a couple of seconds in practice: the grace period, one attempt, the status try
        err = out.stderr()
    assert proc.returncode == 130, err
    text = out.text()
    stored = [e for e, _ in episodes_of(db)]
    assert stored == list(range(1, len(stored) + 1))
    assert err.splitlines()[-1].startswith("interrupted by Ctrl-C") and err.count("interrupted by") == 1
    assert f"{len(stored)} episodes written" in err and " not written" in err
    assert "episodes could not be written (the database stayed busy)" in text
    assert "status could not be saved (database busy): it still says running" in text
    assert run_status(db) == "running"


@pytest.mark.slow
def test_a_database_file_deleted_during_training_stops_it_with_one_line(tmp_path, processes):
    db = tmp_path / "t.db"
    out = _training(db, processes, "--episodes", "10000")
    proc = out.proc
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        path.unlink(missing_ok=True)
    err = out.stderr(timeout=120)
    assert proc.returncode == 2, err
    assert err.splitlines()[-1].startswith(f"error: {db} was deleted or replaced while this process had it open")
    assert err.count("error:") == 1 and "Traceback" not in err
    assert not db.exists()  # nothing recreated at the path on the way out


class CommitOutcomeLost(TelemetryStore):
    """A real store whose first write commits and then reports a lost connection (the outcome is unknown)."""

    lost = False

    def write_episode(self, *args, **kwargs) -> None:
        super().write_episode(*args, **kwargs)
        if not self.lost:
            self.lost = True
            raise DatabaseRetryable("connection lost during COMMIT", "server closed the connection")


def test_an_episode_whose_commit_outcome_was_unknown_is_looked_up_not_written_twice(tmp_path):
    db = str(tmp_path / "t.db")
    session = TrainingSession(config(episodes=1, agents=2), db=db)
    report = next(session.trainer.run(1))
    agents = session.publisher.publish_episode(report.episode, report.snapshot)
    run = session.result.run
    session.writer.close()
    session._release()
    with CommitOutcomeLost.open(db, write=True) as store:
        writer = BackgroundWriter(store, run)
        writer.submit(episode_meta(report), agents)
        writer.close()
        assert store.lost and writer.retries == 1
        assert writer.written == 1 and writer.unwritten == []
    assert episodes_of(Path(db), run) == [(1, 2)]


@pytest.mark.slow
def test_a_disk_that_refuses_writes_for_a_while_is_waited_out(tmp_path, processes):
    """The trainer's file-size limit drops to one byte (every write to the database fails, as on a full
    disk) and is lifted again: training waits, then every episode is written once."""
    db = tmp_path / "t.db"
    out = _training(db, processes, "--episodes", "30")
    proc = out.proc
    _, hard = resource.prlimit(proc.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (1, hard))
    try:
        wait_for(lambda: out.has("training waits: disk write failing"), "the trainer saying it waits")
        time.sleep(1.0)
    finally:
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
    proc.wait(timeout=300)
    err = out.stderr()
    assert proc.returncode == 0, err
    assert episodes_of(db) == [(e, 2) for e in range(1, 31)]
    assert run_status(db) == "finished"


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once_with_one_line_and_exit_130(tmp_path, processes):
    db = tmp_path / "t.db"
    out = _training(db, processes, "--episodes", "10000", queue=16)
    proc = out.proc
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    err = out.stderr(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.count("interrupted by") == 1
    assert err.splitlines()[-1].startswith("interrupted by Ctrl-C twice, stopped at once: run 1 marked interrupted, ")
    stored = [e for e, _ in episodes_of(db)]
    assert stored == list(range(1, len(stored) + 1))
    assert f"{len(stored)} episodes written" in err
    assert f"run 1 interrupted: {len(stored)} episodes written" in out.text()


@pytest.mark.slow
def test_a_double_ctrl_c_on_a_locked_database_counts_only_what_committed(tmp_path, processes):
    """The summary's every number comes from what was committed: the unwritten episodes are exactly the trained
    ones that are not in the database, and a checkpoint is said to be stored only when it is."""
    db = tmp_path / "t.db"
    out = _training(db, processes, "--episodes", "10000", queue=16)
    proc = out.proc
    with _write_lock_held(db, out):
        wait_for(lambda: out.has("training waits: database busy") and proc.poll() is None, "the trainer waiting")
        time.sleep(1.5)  # the queue fills: 16 episodes wait, and the trainer with them
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        err = out.stderr()
    assert proc.returncode == 130, err
    text = " ".join(out.text().split())
    stored = {e for e, _ in episodes_of(db)}
    trained = int(re.search(r"(\d+) episodes in [\d.]+s", text).group(1))
    said = re.search(r"(\d+) episodes could not be written \(the database stayed busy\): ([\d, ]+)", text)
    assert said is not None, text
    unwritten = {int(e) for e in said.group(2).split(", ")}
    assert unwritten == set(range(1, trained + 1)) - stored and len(unwritten) == int(said.group(1)) > 1
    assert f"{len(stored)} episodes written, {len(unwritten)} not written" in err
    with contextlib.closing(sqlite3.connect(db)) as connection:
        checkpoints = {e for (e,) in connection.execute("SELECT episode FROM checkpoints")}
    claimed = re.search(r"learner checkpoint after episode (\d+) stored", text)
    assert claimed is None or int(claimed.group(1)) in checkpoints


@pytest.mark.slow
def test_ctrl_c_of_a_trainer_waiting_on_a_full_disk_is_one_line_with_no_traceback(tmp_path, processes):
    """The file stays in WAL mode when the disk cannot take the switch back: said in one line, never raised
    from close over the real outcome."""
    db = tmp_path / "t.db"
    out = _training(db, processes, "--episodes", "10000")
    proc = out.proc
    _, hard = resource.prlimit(proc.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (1, hard))  # every write fails, as on a full disk
    wait_for(lambda: out.has("training waits: disk write failing"), "the trainer saying the disk fails")
    proc.send_signal(signal.SIGINT)
    err = out.stderr(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err + out.text(), err
    lines = err.splitlines()
    assert lines[-1].startswith("interrupted by Ctrl-C: run 1 status not saved, ") and " not written" in lines[-1]
    assert err.count("interrupted by") == 1 and "error:" not in err, err
    assert "episodes could not be written (the disk kept failing writes)" in out.text()
    stored = [e for e, _ in episodes_of(db)]
    assert stored == list(range(1, len(stored) + 1)) and len(stored) >= 2  # what committed is all there
