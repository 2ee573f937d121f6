"""``RunLock``: at most one process trains a run at a time, on one machine (SQLite) or on one server (PostgreSQL).

The lock lives as long as the process holds it and vanishes when the process dies, even by kill -9, so a
crashed run can be resumed at once and nothing is left on disk:

- SQLite: a Linux abstract-namespace Unix socket named for the database file (device, inode) and the run;
  binding fails while another process holds the name. It listens, so readers can see it is held without
  taking it (``run_liveness``). Elsewhere, ``flock`` on a file in the temp directory.
- PostgreSQL: a session-level advisory lock ``(727367, run)`` held on a connection of its own.
"""

import contextlib
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from townlet.persistence.engine import is_sqlite, make_engine
from townlet.persistence.errors import DatabaseError, DatabaseRetryable
from townlet.persistence.run_liveness import ADVISORY_NAMESPACE, PG_LOCK_HELD_BY_SQL, sqlite_lock_name


class RunBusy(DatabaseError):
    """Another process is training this run right now."""


class RunLock:
    """Owns the lock that says this process trains ``run`` of the database at ``url``."""

    def __init__(self, url: URL, run: int, label: str) -> None:
        self.url, self.run, self.label = url, run, label
        self._held: Any = None
        self._pid: int | None = None  # PostgreSQL: the backend that holds the advisory lock

    def acquire(self) -> "RunLock":
        """Take the lock or raise ``RunBusy`` at once (never waits)."""
        taken = self._sqlite() if is_sqlite(self.url) else self._postgresql()
        if not taken:
            raise RunBusy(
                f"run {self.run} in {self.label} is being trained by another process: wait for it to finish "
                f"(or stop it), then resume; or train a new run"
            )
        return self

    def ensure(self) -> None:
        """Before every write: on PostgreSQL, if the lock's own connection died (a server restart, an outage,
        noticed or not), the lock went with it, so take it again (``RunBusy`` if another process took the run
        meanwhile). One ``SELECT 1`` on a live connection. A SQLite lock cannot be lost."""
        if is_sqlite(self.url) or (isinstance(self._held, tuple) and _alive(self._held[1])):
            return
        self.release()  # the connection died, and the lock with it (or an earlier attempt to re-take it failed)
        try:
            taken = self._postgresql()
        except DBAPIError as exc:
            message = str(exc.orig or exc).strip().splitlines()[0]
            # No connection to take the lock on: the server cannot be reached (stopped, restarting, the network).
            raise DatabaseRetryable(
                f"cannot take run {self.run}'s lock again ({message})", message, unavailable=True
            ) from None
        if not taken:
            raise RunBusy(
                f"run {self.run} in {self.label} was taken by another process while the database was "
                "unavailable: this trainer stops; the episodes it wrote are kept"
            )

    def release(self) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        if isinstance(held, tuple):  # (engine, connection) of an advisory lock
            engine, connection = held
            with contextlib.suppress(DBAPIError):  # a connection the server dropped: the lock went with it
                connection.close()
            engine.dispose()
        else:
            held.close()

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _sqlite(self) -> bool:
        name = sqlite_lock_name(self.url.database or "", self.run)
        if sys.platform == "linux":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind("\0" + name)
            except OSError:
                sock.close()
                return False
            sock.listen(1)  # never accepted: a reader's connect only proves the lock is held
            self._held = sock
            return True
        import fcntl  # pragma: no cover - not Linux

        path = Path(tempfile.gettempdir()) / (name.replace("/", "-") + ".lock")  # pragma: no cover
        handle = path.open("a")  # pragma: no cover
        try:  # pragma: no cover
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # pragma: no cover
            handle.close()
            return False
        self._held = handle  # pragma: no cover
        return True  # pragma: no cover

    def _postgresql(self) -> bool:
        engine = make_engine(self.url, read_only=False)
        try:
            connection = engine.connect()
        except BaseException:
            engine.dispose()
            raise
        taken, pid = connection.execute(
            text("SELECT pg_try_advisory_lock(:namespace, :run), pg_backend_pid()"),
            {"namespace": ADVISORY_NAMESPACE, "run": self.run},
        ).one()
        connection.commit()
        if not taken:
            connection.close()
            engine.dispose()
            return False
        self._held = (engine, connection)
        self._pid = pid
        return True

    def require_held(self, connection: Connection) -> None:
        """Inside a write transaction on ``connection``: refuse to commit unless this lock's own connection
        still holds the run's lock (a server restart between ``ensure()`` and the write dropped it, and the
        pool reconnected without a word). The write is then retried, after ``ensure()`` has taken it again."""
        if is_sqlite(self.url):
            return
        held = (
            self._held is not None
            and connection.execute(text(PG_LOCK_HELD_BY_SQL), {"run": self.run, "pid": self._pid}).scalar_one()
        )
        if not held:
            reason = "the run's lock went with a lost connection"
            raise DatabaseRetryable(f"cannot write {self.label} ({reason}): taking it again", reason)


def _alive(connection: Any) -> bool:
    """Whether the lock's own connection still reaches the server (a dead one held a lock that is gone)."""
    try:
        connection.execute(text("SELECT 1")).scalar_one()
        connection.commit()
    except DBAPIError:
        return False
    return True
