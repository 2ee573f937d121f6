"""Where the database is, and how a SQLite file is opened: standard library only (no SQLAlchemy import).

``--db`` is a file path or a SQLAlchemy URL, also read from ``$TOWNLET_DB``; the default is ``./townlet.db``.
Every SQLite connection, SQLAlchemy's pooled ones and the read path's bare one, comes from ``connect_sqlite``.
"""

import os
import sqlite3
from pathlib import Path

from townlet.persistence.errors import DatabaseNotFound, DatabaseUnavailable

DEFAULT_DB = "townlet.db"
DB_ENV_VAR = "TOWNLET_DB"
BUSY_TIMEOUT_MS = 30_000
#: The largest integer a database column (a 64-bit signed integer) can hold: the bound of every id a user types.
INT64_MAX = 2**63 - 1


def default_db() -> str:
    """``$TOWNLET_DB`` when set, else ``./townlet.db``."""
    return os.environ.get(DB_ENV_VAR) or DEFAULT_DB


def is_url(db: str) -> bool:
    """A ``--db`` value with ``://`` is a SQLAlchemy URL; anything else is a SQLite file path."""
    return "://" in db


def sqlite_path(database: str, *, read_only: bool) -> Path:
    """The file behind a SQLite ``--db``; reading never creates one, so a missing file is an error."""
    if database in ("", ":memory:"):
        raise DatabaseUnavailable("an in-memory SQLite database cannot hold telemetry: pass a file path to --db")
    path = Path(database).expanduser()
    if read_only and not path.exists():
        raise DatabaseNotFound(f"no database at {path}: train first (townlet-telemetry train --db {path}) or fix --db")
    if path.is_dir():
        raise DatabaseUnavailable(f"{path} is a directory: pass a database file to --db")
    return path


def read_only_uri(path: Path) -> str:
    """The URI that opens a SQLite file read-only (``immutable`` for a WAL-mode file at rest, see
    ``connect_sqlite``): for a connection, or for ``ATTACH`` on a connection opened by ``connect_sqlite``."""
    options = "mode=ro&immutable=1" if _wal_at_rest(path) else "mode=ro"
    return f"{path.resolve().as_uri()}?{options}"


def _wal_at_rest(path: Path) -> bool:
    """A WAL-mode file (header bytes 18-19 are 2) with no ``-wal`` file beside it: nobody has it open."""
    try:
        with path.open("rb") as handle:
            header = handle.read(20)
    except OSError:
        return False
    return header[18:20] == b"\x02\x02" and not path.with_name(path.name + "-wal").exists()


def connect_sqlite(path: Path, *, read_only: bool) -> sqlite3.Connection:
    """A connection in autocommit mode (callers BEGIN themselves) with townlet's settings.

    Read-only connections open the file with ``mode=ro``: they never create or change it. Writers get
    ``synchronous=NORMAL``; WAL is switched on by the store once the file is known to be townlet's, and
    off again by the last writer to close it, so a file at rest has no sidecars and a reader creates none.
    A WAL-mode file at rest (left by a killed trainer, or written by townlet 0.2) is read as ``immutable``:
    with no ``-wal`` beside it, no process has it open, and a reader must not create sidecars that would
    belong to the reading user (and lock the owner out) or fail in a directory it cannot write.
    """
    if read_only:
        connection = sqlite3.connect(read_only_uri(path), uri=True, check_same_thread=False)
    else:  # a URI too, so that ATTACH takes one (``db copy`` attaches its source read-only)
        connection = sqlite3.connect(path.resolve().as_uri(), uri=True, check_same_thread=False)
    connection.isolation_level = None
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    connection.execute("PRAGMA foreign_keys = ON")
    if not read_only:
        connection.execute("PRAGMA synchronous = NORMAL")
    return connection
