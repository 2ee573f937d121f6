"""SIGTERM and SIGHUP mean what the first Ctrl-C means; a second signal stops a real ``train`` at once.

Real processes throughout: a scheduler (``kill``, ``timeout``, SLURM, Kubernetes) or a closed terminal
signals the process, and the run must end ``interrupted`` with its final checkpoint, resumable exactly.
"""

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import Lines, wait_for
from tests.resume_reference import AGENTS, telemetry
from townlet.training.interrupt import StopAfterEpisode
from townlet_cli.app import app

runner = CliRunner()
FIRST = ["--episodes", "30", "--agents", str(AGENTS), "--seed", "0", "--device", "cpu"]


def _train(db: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "townlet_cli", "train", "--db", str(db), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=db.parent,
    )  # fmt: skip


def _stored(db: Path, sql: str) -> list[tuple]:
    try:  # closed at once: a connection left to the garbage collector would keep the trainer's file in WAL mode
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
            return connection.execute(sql).fetchall()
    except sqlite3.Error:  # not created yet
        return []


def _episodes(db: Path) -> int:
    rows = _stored(db, "SELECT count(*) FROM episodes")
    return rows[0][0] if rows else 0


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["TERM", "HUP"])
def test_a_stop_signal_at_a_random_episode_checkpoints_marks_interrupted_and_resumes_exactly(
    tmp_path, processes, straight, signum, code
):
    db = tmp_path / "t.db"
    proc = _train(db, *FIRST)
    processes.append(proc)
    stop_at = random.randint(2, 25)
    wait_for(lambda: _episodes(db) >= stop_at, f"{stop_at} episodes written")
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    done = _episodes(db)
    name = signal.Signals(signum).name
    assert f"interrupted by {name}: run 1 marked interrupted, {done} episodes written" in err
    assert out == "" and f"training summary (stopped by {name})" in err
    assert f"learner checkpoint after episode {done} stored" in err
    assert _stored(db, "SELECT status FROM runs") == [("interrupted",)]
    assert _stored(db, "SELECT max(episode) FROM checkpoints") == [(done,)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.db"], out + err  # closed cleanly: no -wal, no -shm
    resumed = runner.invoke(app, ["train", "--resume", "1", "--episodes", str(30 - done), "--db", str(db)])
    assert resumed.exit_code == 0, resumed.output
    assert telemetry(str(db)) == straight


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM])  # a double Ctrl-C: test_writer_faults
def test_a_second_signal_stops_a_real_train_in_the_middle_of_its_episode(tmp_path, processes, signum):
    db = tmp_path / "t.db"
    proc = _train(db, "--episodes", "3", "--agents", "32768", "--seed", "0", "--device", "cpu")  # seconds an episode
    processes.append(proc)
    lines = Lines(proc)
    wait_for(lambda: lines.has("training 32768 agents"), "training started")
    time.sleep(0.5)
    proc.send_signal(signum)
    time.sleep(0.3)
    proc.send_signal(signum)
    err = lines.stderr(timeout=60)
    name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    assert proc.returncode == (130 if signum == signal.SIGINT else 143), err
    assert f"interrupted by {name} twice, stopped at once: run 1 marked interrupted, 0 episodes written" in err
    assert _episodes(db) == 0  # the first episode was abandoned, not finished
    assert "Traceback" not in err + lines.text()
    listed = json.loads(runner.invoke(app, ["runs", "--json", "--db", str(db)]).stdout)
    assert listed[0]["status"] == "interrupted"


def test_the_grace_period_running_out_stops_at_once_like_a_second_signal():
    with StopAfterEpisode(grace_s=1) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop() and stop.name == "SIGTERM" and stop.exit_code == 143 and not stop.forced
        with pytest.raises(KeyboardInterrupt):
            time.sleep(5)  # the alarm interrupts this, as a second SIGTERM would
        assert stop.forced == "grace" and stop.how == "SIGTERM, then 1 s without a clean stop: stopped at once"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_a_settled_stop_ignores_further_signals_and_cancels_the_grace_alarm():
    with StopAfterEpisode(grace_s=1) as stop:
        os.kill(os.getpid(), signal.SIGHUP)
        stop.settle()
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(1.5)  # no alarm: it was cancelled
        assert stop.exit_code == 129 and not stop.forced
