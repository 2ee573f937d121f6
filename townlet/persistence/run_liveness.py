"""Whether a process is training a run right now, asked without taking its lock (standard library only).

A trainer holds its run's lock (``run_lock.RunLock``) for as long as it lives; the kernel or the server drops
it when the process dies, by any means (kill -9 included). A run whose stored status is ``running`` while
nobody holds its lock is therefore ``stale``: its process died without saying so. Readers show it that way;
the next ``train`` on the database stores it.

- SQLite: the lock is a listening Linux abstract-namespace Unix socket named for the database file (device,
  inode) and the run. A non-blocking connect reaches it while it is held and is refused once it is gone.
- PostgreSQL: the lock is the session-level advisory lock ``(ADVISORY_NAMESPACE, run)``, visible in
  ``pg_locks`` to any role (``PG_LOCK_HELD_SQL``). A trainer whose machine vanished keeps it until the server
  notices the dead connection (TCP keepalive).
"""

import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ADVISORY_NAMESPACE = 727367

#: Whether the run's advisory lock is held in this database (parameter ``:run``).
PG_LOCK_HELD_SQL = f"""
SELECT EXISTS (SELECT 1 FROM pg_locks
               WHERE locktype = 'advisory' AND granted AND objsubid = 2
                 AND classid::bigint = {ADVISORY_NAMESPACE} AND objid::bigint = :run
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))
"""


#: Whether the backend ``:pid`` holds the run's advisory lock (a writer's check inside its own transaction).
PG_LOCK_HELD_BY_SQL = PG_LOCK_HELD_SQL.replace("AND granted", "AND granted AND pid = :pid")


def sqlite_lock_name(path: Path | str, run: int) -> str:
    """The run lock's name for the SQLite file at ``path`` (which must exist)."""
    stat = os.stat(path)
    return f"townlet-run/{stat.st_dev}:{stat.st_ino}/{run}"


def sqlite_lock_held(path: Path | str, run: int) -> bool:
    """Whether some process holds run ``run``'s lock on this file; True where that cannot be told (not Linux)."""
    if sys.platform != "linux":  # pragma: no cover - the lock is a flock'd file there: assume it is held
        return True
    try:
        name = sqlite_lock_name(path, run)
    except OSError:
        return True  # the file is gone: nothing to say about its runs
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.setblocking(False)
    try:
        probe.connect("\0" + name)
    except ConnectionRefusedError:
        return False
    except BlockingIOError:  # held, and its backlog is full of earlier probes
        return True
    finally:
        probe.close()
    return True


def run_is_trained(run: int, url: Any, scalar: Callable[[str, dict[str, Any]], Any]) -> bool:
    """Whether a process holds run ``run``'s lock in the database at ``url`` (a SQLAlchemy URL): on SQLite by
    probing its socket, on PostgreSQL by asking the server, ``scalar(PG_LOCK_HELD_SQL, {"run": run})``, on the
    caller's connection."""
    if url.get_backend_name() == "sqlite":
        return sqlite_lock_held(url.database or "", run)
    return bool(scalar(PG_LOCK_HELD_SQL, {"run": run}))
