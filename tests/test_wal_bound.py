"""The ``-wal`` stays bounded while the dashboard reads beside a trainer writing the same SQLite file.

A real ``train`` (512 agents: every episode and every checkpoint adds megabytes to the log) and a real
``serve`` answering a bounded loop of run-wide requests from four clients at once, so that some read is
almost always in progress. SQLite's automatic checkpoints cannot restart the log under such reads; the
writer's scheduled ``wal_checkpoint(TRUNCATE)`` must.
"""

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import Lines, free_port, serve, wait_for
from townlet.persistence.store import WAL_TRUNCATE_BYTES

#: What the docs promise: the truncate threshold plus what the writer adds before its next check (one
#: episode and its checkpoint, a few MB at 512 agents) and the wait for the readers; twice the threshold.
BOUND = 2 * WAL_TRUNCATE_BYTES
#: The dashboard reads until this many episodes have gone through the log (each adds its rows, every tenth
#: a 3.3 MB checkpoint: past the bound without the truncation). Counted in episodes, not
#: seconds, so a loaded machine reads longer instead of testing less.
THROUGH_EPISODES = 100
READ_AT_MOST_S = 240


def _episodes_written(db: Path) -> int:
    import contextlib
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
            return connection.execute("SELECT count(*) FROM episodes").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_the_wal_stays_under_its_bound_while_the_dashboard_reads_beside_a_trainer(tmp_path, processes):
    db = tmp_path / "t.db"
    wal = Path(f"{db}-wal")
    trainer = subprocess.Popen(
        [sys.executable, "-m", "townlet_cli", "train", "--episodes", "100000", "--agents", "512", "--device", "cpu",
         "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    processes.append(trainer)
    trainer_out = Lines(trainer)
    wait_for(lambda: _episodes_written(db) >= 2, "the trainer writing")
    port = free_port()
    server = serve(db, port)
    processes.append(server)
    answered: list[int] = []
    stop = threading.Event()

    def ask() -> None:
        paths = ["/api/runs/1", "/api/runs/1/episodes", "/api/runs/1/flags", "/api/runs/1/heatmap"]
        i = 0
        while not stop.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{paths[i % 4]}", timeout=60) as response:
                    response.read()
                    answered.append(response.status)
            except OSError:
                time.sleep(0.1)
            i += 1

    askers = [threading.Thread(target=ask, daemon=True) for _ in range(4)]
    for asker in askers:
        asker.start()
    largest = 0
    try:
        start = _episodes_written(db)
        deadline = time.monotonic() + READ_AT_MOST_S
        while _episodes_written(db) - start < THROUGH_EPISODES and time.monotonic() < deadline:
            if wal.exists():
                largest = max(largest, wal.stat().st_size)
            time.sleep(0.1)
    finally:
        stop.set()
        for asker in askers:
            asker.join(60)
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
        trainer.send_signal(signal.SIGINT)
        trainer_out.stderr(timeout=60)
    through = _episodes_written(db) - start
    assert len(answered) > 40 and set(answered) == {200}, (len(answered), set(answered))
    assert through >= THROUGH_EPISODES, f"only {through} episodes went through the log in {READ_AT_MOST_S} s"
    assert largest <= BOUND, f"the -wal reached {largest / 1e6:.1f} MB (bound {BOUND / 1e6:.1f} MB)"
    assert not wal.exists() and trainer.returncode == 130  # and went away when the trainer closed the file
    assert os.path.getsize(db) > 0
