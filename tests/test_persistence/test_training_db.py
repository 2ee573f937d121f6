"""The trainer writes every episode through the background writer: resume, Ctrl-C, SIGKILL, concurrency."""

import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import wait_for
from townlet.config import load_config, with_overrides
from townlet.persistence.reader import TelemetryReader
from townlet.persistence.store import EpisodeMeta, TelemetryStore
from townlet.persistence.writer import BackgroundWriter
from townlet.telemetry.dto import SCHEMA_VERSION
from townlet.telemetry.payloads import episode_envelope
from townlet.training.session import TrainingSession

ROOT = Path(__file__).resolve().parents[2]


def config(episodes=3, agents=3, seed=0):
    return with_overrides(load_config(), "training", episodes=episodes, agents=agents, seed=seed, device="cpu")


def episodes_of(db: Path, run: int = 1) -> list[tuple[int, int]]:
    """(episode, number of agent rows) per episode of a run, read with plain sqlite3."""
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT e.episode, COUNT(a.agent_idx) FROM episodes e LEFT JOIN agent_snapshots a ON a.episode_pk = e.id "
            "WHERE e.run_id = ? GROUP BY e.id ORDER BY e.episode",
            (run,),
        ).fetchall()


def written_so_far(db: Path) -> int:
    """Episodes committed so far by a training process that may still be creating the schema."""
    if not db.exists():
        return 0
    try:
        return len(episodes_of(db))
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0


def run_status(db: Path, run: int = 1) -> str:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT status FROM runs WHERE id = ?", (run,)).fetchone()[0]


def test_every_episode_and_agent_is_written_and_the_run_finishes(db_url):
    result = TrainingSession(config(), db=db_url).run()
    assert result.status == "finished" and result.written == 3
    with TelemetryStore.open(db_url, write=False) as store:
        assert store.count_rows() == {"runs": 1, "episodes": 3, "agent_snapshots": 9}
        info = store.get_run(result.run)
        assert (info.status, info.num_agents, info.schema_version) == ("finished", 3, SCHEMA_VERSION)
        assert info.config["training"]["agents"] == 3
    with TelemetryReader(db_url) as reader:
        stored = reader.episode_agents(reader.run(result.run), 2).agents
    report = result.reports[1]
    assert stored == episode_envelope(result.run_uuid, 2, report.snapshot)["agents"]


def test_resume_continues_numbering_after_the_last_episode(tmp_path):
    db = str(tmp_path / "t.db")
    first = TrainingSession(config(episodes=2), db=db).run()
    resumed = TrainingSession(config(episodes=3), db=db, resume=first.run).run()
    assert resumed.run == first.run and resumed.run_uuid == first.run_uuid
    assert [r.episode for r in resumed.reports] == [3, 4, 5]
    assert [e for e, _ in episodes_of(Path(db))] == [1, 2, 3, 4, 5]
    assert run_status(Path(db)) == "finished"


def test_stop_marks_the_run_interrupted_after_flushing_every_episode(tmp_path):
    db = tmp_path / "t.db"
    session = TrainingSession(config(episodes=50), db=str(db))
    result = session.run(stop=lambda: len(session.result.reports) >= 4)
    assert result.status == "interrupted"
    assert episodes_of(db) == [(e, 3) for e in (1, 2, 3, 4)]
    assert run_status(db) == "interrupted"


def test_an_exception_in_training_still_flushes_then_marks_crashed(tmp_path):
    db = tmp_path / "t.db"
    session = TrainingSession(config(episodes=50), db=str(db))

    def explode(report):
        if report.episode == 3:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        session.run(on_episode=explode)
    assert [e for e, _ in episodes_of(db)] == [1, 2, 3]
    assert run_status(db) == "crashed"


class SlowStore:
    """Stands in for a TelemetryStore whose disk is slow (or, with fail_at, failing)."""

    def __init__(self, delay: float, fail_at: int | None = None) -> None:
        self.delay, self.fail_at = delay, fail_at
        self.episodes: list[int] = []

    def require_same_file(self) -> None:
        pass

    def bound_wal(self) -> bool:
        return False

    def write_episode(self, run, episode, agents, checkpoint=None, keep_checkpoints=1, busy_timeout_ms=None, **_):
        time.sleep(self.delay)
        if episode.episode == self.fail_at:
            raise OSError("disk full")
        self.episodes.append(episode.episode)


def _meta(n: int) -> EpisodeMeta:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return EpisodeMeta(n, 10, 1, 0.1, now, now)


def test_writer_blocks_when_full_never_drops_and_counts_the_wait():
    store = SlowStore(delay=0.02)
    writer = BackgroundWriter(store, run=1, max_queued=2)  # type: ignore[arg-type]
    for n in range(1, 21):
        writer.submit(_meta(n), [])
    writer.close()
    assert store.episodes == list(range(1, 21))
    assert writer.written == 20
    assert writer.blocked_count > 0 and writer.blocked_s > 0


def test_a_failed_write_is_raised_in_the_training_thread():
    writer = BackgroundWriter(SlowStore(delay=0.0, fail_at=2), run=1, max_queued=4)  # type: ignore[arg-type]
    writer.submit(_meta(1), [])
    writer.submit(_meta(2), [])
    with pytest.raises(OSError, match="disk full"):
        for n in range(3, 200):
            writer.submit(_meta(n), [])
            time.sleep(0.001)
    writer.close()


def _train_process(db: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "townlet_cli", "train", "--agents", "4", "--device", "cpu", "--db", str(db), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=db.parent,
    )  # fmt: skip


@pytest.mark.slow
def test_sigkill_at_a_random_moment_loses_no_half_episode_and_resume_continues(tmp_path, processes):
    db = tmp_path / "t.db"
    proc = _train_process(db, "--episodes", "10000")
    processes.append(proc)
    wait_for(lambda: written_so_far(db) >= 3, "3 episodes written")
    time.sleep(random.uniform(0.0, 0.5))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    written = episodes_of(db)
    assert written and all(agents == 4 for _, agents in written)
    assert [e for e, _ in written] == list(range(1, len(written) + 1))
    assert run_status(db) == "running"  # nobody could mark it: resume is how to continue
    resumed = subprocess.run(
        [sys.executable, "-m", "townlet_cli", "train", "--episodes", "2", "--device", "cpu", "--db", str(db),
         "--resume", "1"],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    after = episodes_of(db)
    assert [e for e, _ in after] == list(range(1, len(written) + 3))
    assert run_status(db) == "finished"


@pytest.mark.slow
def test_ctrl_c_flushes_then_marks_the_run_interrupted(tmp_path, processes):
    db = tmp_path / "t.db"
    proc = _train_process(db, "--episodes", "10000")
    processes.append(proc)
    wait_for(lambda: written_so_far(db) >= 2, "2 episodes written")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert out == ""  # train says everything on stderr
    summary = re.search(r"^(\d+) episodes? in [\d.]+s$", err, re.M)
    assert summary is not None, err
    finished = int(summary[1])
    assert [e for e, _ in episodes_of(db)] == list(range(1, finished + 1))
    assert run_status(db) == "interrupted"
    assert f"run 1 interrupted: {finished} episodes written" in err


@pytest.mark.slow
def test_four_writer_processes_share_one_sqlite_file(tmp_path, processes):
    db = tmp_path / "shared.db"
    procs = [_train_process(db, "--episodes", "6", "--seed", str(seed)) for seed in range(4)]
    processes.extend(procs)
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        # A writer may wait for another's lock and say so in its log ("database: database busy ..."); none fails.
        assert "error" not in err.lower() and "traceback" not in err.lower(), err
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM runs WHERE status = 'finished'").fetchone()[0] == 4
        assert connection.execute("SELECT COUNT(*) FROM episodes").fetchone()[0] == 24
        assert connection.execute("SELECT COUNT(*) FROM agent_snapshots").fetchone()[0] == 96
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_reading_while_training_writes(tmp_path):
    db = tmp_path / "t.db"
    session = TrainingSession(config(episodes=6), db=str(db))
    seen: list[int] = []

    def read_along(report):
        """While training runs, a separate reader sees the episodes before this one appear."""
        deadline = time.monotonic() + 60
        while True:
            with TelemetryStore.open(str(db), write=False) as reader:
                last = reader.last_episode(session.result.run)
            committed = 0 if last is None else last[0]
            if committed >= report.episode - 1 or time.monotonic() > deadline:
                seen.append(committed)
                return
            time.sleep(0.01)

    session.run(on_episode=read_along)
    assert all(committed >= episode - 1 for episode, committed in enumerate(seen, start=1)), seen
    assert seen == sorted(seen) and seen[-1] <= 6 and seen[-1] >= 5


def test_writer_thread_is_gone_after_the_session(tmp_path):
    TrainingSession(config(episodes=1), db=str(tmp_path / "t.db")).run()
    assert "townlet-writer" not in {t.name for t in threading.enumerate()}
