"""Turning ``--db`` (a path or any SQLAlchemy URL) into an engine with the right settings.

SQLite: WAL (switched on by the store once the file is known to be townlet's), ``synchronous=NORMAL``,
``busy_timeout``, foreign keys on, and every write transaction ``BEGIN IMMEDIATE`` (so concurrent writers
queue on the busy timeout instead of failing on a lock upgrade, and DDL is transactional). Reading opens
the file with ``mode=ro``: it never creates or changes it.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool, QueuePool

from townlet.persistence.errors import DatabaseUnavailable
from townlet.persistence.location import connect_sqlite, is_url, sqlite_path


def database_url(db: str) -> URL:
    """A path becomes a SQLite URL; anything with ``://`` must be a SQLAlchemy URL."""
    if not is_url(db):
        return URL.create("sqlite+pysqlite", database=str(Path(db).expanduser()))
    try:
        url = make_url(db)
    except ArgumentError:
        raise DatabaseUnavailable(
            f"{db!r} is not a database URL: pass a file path or e.g. postgresql+psycopg://user@host/dbname"
        ) from None
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url


def describe(url: URL) -> str:
    """How to name this database to the user (no password), as they would pass it to ``--db``."""
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    return url.render_as_string(hide_password=True)


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def make_engine(url: URL, *, read_only: bool) -> Engine:
    """An engine for ``url``; ``read_only`` engines never create, write or migrate anything."""
    if is_sqlite(url):
        return _sqlite_engine(url, read_only=read_only)
    connect_args: dict[str, Any] = {}
    if read_only and url.get_backend_name() == "postgresql":
        connect_args["options"] = "-c default_transaction_read_only=on"
    try:
        return create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    except Exception as exc:  # a missing driver, a malformed URL: name the URL and the reason, once
        raise DatabaseUnavailable(f"cannot use database {describe(url)} ({exc})") from None


def _sqlite_engine(url: URL, *, read_only: bool) -> Engine:
    path = sqlite_path(url.database or "", read_only=read_only)
    # Writers keep their connections (a new one per episode costs more than the episode's inserts).
    engine = create_engine(
        "sqlite+pysqlite://",
        creator=lambda: connect_sqlite(path, read_only=read_only),
        poolclass=NullPool if read_only else QueuePool,
    )

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


@contextmanager
def migration_transaction(connection: Connection) -> Iterator[Connection]:
    """Begin the transaction a migration runs in, on a connection that has not begun one.

    On SQLite foreign keys are switched off first (they cannot be switched inside a transaction): a batch
    migration rebuilds a table by dropping it, and with foreign keys on that drop would cascade-delete every
    row that refers to it. Before the commit ``PRAGMA foreign_key_check`` must find nothing; then they are
    switched on again. Elsewhere this is a plain transaction.
    """
    if connection.dialect.name != "sqlite":
        with connection.begin():
            yield connection
        return
    raw = connection.connection.driver_connection
    raw.execute("PRAGMA foreign_keys = OFF")
    try:
        with connection.begin():
            yield connection
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise DatabaseUnavailable(
                    f"the migration left {len(broken)} rows pointing at missing rows (first: {tuple(broken[0])}): "
                    "nothing was changed; report this with the database attached"
                )
    finally:
        raw.execute("PRAGMA foreign_keys = ON")
