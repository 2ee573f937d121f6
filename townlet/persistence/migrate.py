"""Alembic, driven from code: the schema_version <-> revision map and the check every command runs first.

The migrations ship inside the package (``townlet_migrations``, the repository's ``migrations/`` folder), so
the installed CLI needs no checkout and no ``alembic.ini``. Alembic gets our open connection through
``Config.attributes["connection"]``: one engine, one transaction, SQLite and PostgreSQL alike.
"""

from collections.abc import Callable
from pathlib import Path

import townlet_migrations
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

from townlet.persistence.errors import DatabaseTooNew, DatabaseTooOld, NotATownletDatabase
from townlet.persistence.models import Base
from townlet.telemetry.dto import SCHEMA_VERSION

SCRIPT_LOCATION = Path(townlet_migrations.__file__).parent
VERSION_TABLE = "townlet_alembic_version"

#: Telemetry schema_version -> the Alembic revision that creates it. One entry per revision (tested).
REVISION_BY_SCHEMA: dict[int, str] = {1: "0001"}
SCHEMA_BY_REVISION: dict[str, int] = {rev: schema for schema, rev in REVISION_BY_SCHEMA.items()}
HEAD_REVISION = REVISION_BY_SCHEMA[SCHEMA_VERSION]

EMPTY = "empty"  # a database with no tables at all: writers may create the schema


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
    tables = inspect(connection).get_table_names()
    if VERSION_TABLE not in tables:
        if not tables:
            return EMPTY
        raise NotATownletDatabase(
            f"{label} is not a townlet database (it has tables but no {VERSION_TABLE}): "
            "point --db at a townlet database or a new file"
        )
    revisions = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(revisions) != 1:
        if not revisions:
            return EMPTY if set(tables) == {VERSION_TABLE} else _foreign(label)
        raise NotATownletDatabase(f"{label} has {len(revisions)} schema heads: it was not written by townlet")
    return revisions[0]


def _foreign(label: str) -> str:
    raise NotATownletDatabase(f"{label} has townlet's version table but no revision: point --db at another file")


def require_current(connection: Connection, label: str, *, db_flag: str) -> None:
    """Refuse a database whose schema is not this code's head, saying which way to upgrade."""
    revision = database_revision(connection, label)
    if revision == HEAD_REVISION:
        return
    if revision == EMPTY:
        raise NotATownletDatabase(f"{label} is empty: train into it first (townlet-telemetry train {db_flag})")
    known = script_revisions()
    if revision in known and known.index(revision) < known.index(HEAD_REVISION):
        raise DatabaseTooOld(
            f"database is at schema {SCHEMA_BY_REVISION.get(revision, revision)}, this townlet needs "
            f"{SCHEMA_VERSION}: run `townlet-telemetry db upgrade {db_flag}`"
        )
    raise DatabaseTooNew(
        f"database is at revision {revision}, newer than this townlet (schema {SCHEMA_VERSION}, revision "
        f"{HEAD_REVISION}): upgrade townlet (pip install -U townlet-telemetry)"
    )


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


def upgrade(connection: Connection, revision: str = "head") -> None:
    command.upgrade(alembic_config(connection), revision)


def downgrade(connection: Connection, revision: str) -> None:
    command.downgrade(alembic_config(connection), revision)


def model_differences(connection: Connection) -> list[object]:
    """What ``alembic check`` would report: differences between the models and the migrated database."""
    context = MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE, "compare_type": True, "render_as_batch": True}
    )
    return list(compare_metadata(context, Base.metadata))


Migrator = Callable[[Connection, str], None]
