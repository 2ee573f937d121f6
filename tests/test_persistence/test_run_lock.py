"""``RunLock`` on both backends: one holder per run, released on close, and per run (not per database)."""

import subprocess
import sys

import pytest

from tests.helpers import wait_for
from townlet.persistence.engine import database_url
from townlet.persistence.run_lock import RunBusy, RunLock
from townlet.persistence.store import TelemetryStore


@pytest.fixture
def url(db_url):
    with TelemetryStore.open(db_url, write=True):
        pass  # the schema (and, for SQLite, the file the lock is named after)
    return database_url(db_url)


def test_a_second_holder_is_refused_until_the_first_releases(url):
    first = RunLock(url, 1, "the db").acquire()
    with pytest.raises(RunBusy, match="run 1 in the db is being trained by another process"):
        RunLock(url, 1, "the db").acquire()
    with RunLock(url, 2, "the db"):  # another run of the same database is free
        pass
    first.release()
    with RunLock(url, 1, "the db"):
        pass


def test_another_process_holding_the_lock_is_seen(url, processes):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from townlet.persistence.engine import database_url\n"
         "from townlet.persistence.run_lock import RunLock\n"
         f"lock = RunLock(database_url({url.render_as_string(hide_password=False)!r}), 7, 'x').acquire()\n"
         "print('held', flush=True)\n"
         "time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    processes.append(holder)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunBusy):
        RunLock(url, 7, "x").acquire()
    holder.kill()  # dies without releasing: the lock goes with it (a server notices the closed socket)
    holder.wait()
    locks: list[RunLock] = []

    def free() -> bool:
        try:
            locks.append(RunLock(url, 7, "x").acquire())
        except RunBusy:
            return False
        return True

    wait_for(free, "the dead holder's lock to go", timeout=30)
    locks[0].release()
