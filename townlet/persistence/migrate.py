"""Alembic, driven from code: upgrade, downgrade, and the revision check of every SQLAlchemy-opened database.

The migrations ship inside the package (``townlet_migrations``, the repository's ``migrations/`` folder), so
the installed CLI needs no checkout and no ``alembic.ini``. Alembic gets our open connection through
``Config.attributes["connection"]``: one engine, one transaction, SQLite and PostgreSQL alike.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import townlet_migrations
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, inspect, text

from townlet.persistence.errors import DatabaseUnavailable
from townlet.persistence.models import Base
from townlet.persistence.revisions import EMPTY, VERSION_TABLE, require_head, revision_from_tables

SCRIPT_LOCATION = Path(townlet_migrations.__file__).parent


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic ``Config`` pointing at the shipped migrations, reusing ``connection`` when given."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.attributes["connection"] = connection
    return config


def script_revisions() -> list[str]:
    """Every revision the shipped migrations know, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [s.revision for s in reversed(list(script.walk_revisions()))]


def database_revision(connection: Connection, label: str) -> str:
    """The database's revision, ``EMPTY`` for a database with no tables; refuses a foreign database."""
    tables = set(inspect(connection).get_table_names())
    versions: list[str] = []
    if VERSION_TABLE in tables:
        versions = list(connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
    return revision_from_tables(tables, versions, label)


def require_current(connection: Connection, label: str, *, db_flag: str) -> None:
    """Refuse a database whose schema is not this code's head, saying which way to upgrade."""
    require_head(database_revision(connection, label), label, db_flag=db_flag)


def prepare_for_writing(connection: Connection, label: str, *, db_flag: str) -> bool:
    """Create the schema in a brand-new database (returns True); otherwise require it to be current.

    Runs inside the caller's transaction: on SQLite that is ``BEGIN IMMEDIATE``, on PostgreSQL an advisory
    lock is taken, so two writers creating one database at once do it exactly once.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(727366)"))
    if database_revision(connection, label) == EMPTY:
        upgrade(connection, "head")
        return True
    require_current(connection, label, db_flag=db_flag)
    return False


#: ``progress(done, total, agent_rows[, what])``: what a long upgrade step reports as it goes (0004's backfill of
#: the rollups; 0005's of the baseline flags, ``what`` = ``"baseline flags"``).
Progress = Callable[..., None]


def upgrade(connection: Connection, revision: str = "head", progress: Progress | None = None) -> None:
    config = alembic_config(connection)
    config.attributes["progress"] = progress
    try:
        command.upgrade(config, revision)
    except CommandError as exc:  # e.g. --to a revision older than the database's
        raise DatabaseUnavailable(f"cannot upgrade to {revision} ({exc}): use `db downgrade` to go back") from None


def downgrade(connection: Connection, revision: str) -> None:
    try:
        command.downgrade(alembic_config(connection), revision)
    except CommandError as exc:  # e.g. a revision newer than the database's
        raise DatabaseUnavailable(
            f"cannot downgrade to {revision} ({exc}): use `db upgrade --to` to go forward"
        ) from None


@dataclass(frozen=True, slots=True)
class Loss:
    """One table, or some of its columns, that a downgrade drops, and how many rows hold data there; or, with
    ``relabels``, one column whose values it rewrites to the older revision's (new -> old), in ``rows`` rows."""

    table: str
    columns: tuple[str, ...] | None
    rows: int
    relabels: dict[str, str] | None = None


def _module(revision: str) -> Any:
    script = ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    if script is None:
        raise ValueError(f"no revision {revision}")
    return script.module


def downgrade_drops(revision: str) -> dict[str, tuple[str, ...] | None]:
    """What downgrading *out of* ``revision`` removes: table -> dropped columns, or None for the whole table."""
    return dict(_module(revision).DOWNGRADE_DROPS)


def downgrade_relabels(revision: str) -> dict[tuple[str, str], dict[str, str]]:
    """Values downgrading *out of* ``revision`` rewrites: (table, column) -> {new value: older value}."""
    return dict(getattr(_module(revision), "DOWNGRADE_RELABELS", {}))


def revisions_between(current: str, target: str) -> list[str]:
    """The revisions a downgrade from ``current`` to ``target`` (a revision or ``base``) steps out of."""
    known = script_revisions()
    stop = 0 if target == "base" else known.index(target) + 1
    return list(reversed(known[stop : known.index(current) + 1]))


def data_lost_by_downgrade(connection: Connection, current: str, target: str) -> list[Loss]:
    """Every table or set of columns the downgrade drops, with how many rows hold data there, newest first."""
    steps = [downgrade_drops(revision) for revision in revisions_between(current, target)]
    whole = {table for drops in steps for table, columns in drops.items() if columns is None}
    existing = set(inspect(connection).get_table_names())
    losses: list[Loss] = []
    for drops in steps:
        for table, columns in drops.items():
            if table not in existing or (columns is not None and table in whole):
                continue  # a column of a table that is dropped whole is counted with the table
            where = "" if columns is None else " WHERE " + " OR ".join(f"{c} IS NOT NULL" for c in columns)
            rows = connection.execute(text(f"SELECT count(*) FROM {table}{where}")).scalar_one()
            losses.append(Loss(table, columns, rows))
    for revision in revisions_between(current, target):
        for (table, column), mapping in downgrade_relabels(revision).items():
            if table in whole or table not in existing:
                continue
            values = ", ".join(f"'{value}'" for value in mapping)
            sql = f"SELECT count(*) FROM {table} WHERE {column} IN ({values})"
            losses.append(Loss(table, (column,), connection.execute(text(sql)).scalar_one(), mapping))
    return losses


def model_differences(connection: Connection) -> list[object]:
    """What ``alembic check`` would report: differences between the models and the migrated database."""
    context = MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE, "compare_type": True, "render_as_batch": True}
    )
    return list(compare_metadata(context, Base.metadata))


Migrator = Callable[[Connection, str], None]
