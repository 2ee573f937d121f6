"""Turning ``--db`` (a path or any SQLAlchemy URL) into an engine with the right settings.

SQLite: WAL (switched on by the store once the file is known to be townlet's), ``synchronous=NORMAL``,
``busy_timeout``, foreign keys on, and every write transaction ``BEGIN IMMEDIATE`` (so concurrent writers
queue on the busy timeout instead of failing on a lock upgrade, and DDL is transactional). Reading opens
the file with ``mode=ro``: it never creates or changes it.
"""

import logging
import re
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

#: What ``--db`` may be, as every refusal of a URL says it.
URL_FORMS = "a file path, sqlite:///PATH, or postgresql+psycopg://user[:password]@host[:port]/dbname"


def database_url(db: str) -> URL:
    """A path becomes a SQLite URL; anything with ``://`` must be a SQLite or PostgreSQL URL. A refusal never
    repeats the password."""
    if not is_url(db):
        return URL.create("sqlite+pysqlite", database=str(Path(db).expanduser()))
    try:
        url = make_url(db)
    except (ArgumentError, ValueError) as exc:
        raise DatabaseUnavailable(
            f"{mask_password(db)} is not a database URL ({str(exc).splitlines()[0]}): pass {URL_FORMS}"
        ) from None
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise DatabaseUnavailable(
            f"townlet keeps telemetry in SQLite or PostgreSQL, not {backend!r} ({describe(url)}): pass {URL_FORMS}"
        )
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url


def mask_password(text: str) -> str:
    """``scheme://user:secret@host`` -> ``scheme://user:***@host`` wherever it appears in ``text``."""
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


def connection_hint(message: str) -> str:
    """What to do about a driver's connection error, for the one-line refusal."""
    lowered = message.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return "check the user and password in --db (or ~/.pgpass, $PGPASSWORD)"
    if "does not exist" in lowered and "database" in lowered:
        return "create it first (createdb NAME, as a role allowed to) or fix the database name in --db"
    if "must be owner" in lowered:
        return "only the database's owner role may change its schema: run db commands as the owner"
    if "permission denied" in lowered:
        return "this role may not do that: ask the database owner for the writer role (see the README's team set-up)"
    return "check --db and that the server is running and reachable"


def file_hint(path: str) -> str:
    """What to do when SQLite cannot open or create the file at ``path`` (never a server's fault)."""
    folder = Path(path).expanduser().parent
    if not folder.is_dir():
        return f"the folder {folder} does not exist: create it, or fix --db"
    return f"check that you may create and write files in {folder}, or fix --db"


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
    # psycopg logs a WARNING ("error ignored terminating <psycopg.Pipeline [BAD]>") for the secondary error of
    # a pipeline whose connection died; the primary error is raised and reported in one line: not a second one.
    logging.getLogger("psycopg").setLevel(logging.ERROR)
    try:
        return create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    except Exception as exc:  # a missing driver, a malformed URL: name the URL and the reason, once
        raise DatabaseUnavailable(f"cannot use database {describe(url)} ({mask_password(str(exc))})") from None


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
