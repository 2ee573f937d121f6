"""Which schema a database is at, and whether this code can use it: no Alembic, no SQLAlchemy.

The one map between telemetry ``schema_version`` and Alembic revision lives here, so the read path (stdlib
``sqlite3`` on a file) and the write path (SQLAlchemy + Alembic) refuse an out-of-date database with the
same messages. A test fails when a shipped revision has no entry.
"""

from townlet.persistence.errors import DatabaseTooNew, DatabaseTooOld, NotATownletDatabase
from townlet.telemetry.dto import SCHEMA_VERSION

#: Alembic's version table, project-specific so a database shared with another Alembic tool never clashes.
VERSION_TABLE = "townlet_alembic_version"

#: Telemetry schema_version -> the Alembic revision that creates it, oldest first. One entry per revision.
REVISION_BY_SCHEMA: dict[int, str] = {1: "0001", 2: "0002"}
SCHEMA_BY_REVISION: dict[str, int] = {rev: schema for schema, rev in REVISION_BY_SCHEMA.items()}
HEAD_REVISION = REVISION_BY_SCHEMA[SCHEMA_VERSION]

#: What ``database_revision`` reports for a database with no tables at all: writers may create the schema.
EMPTY = "empty"


def revision_from_tables(tables: set[str], versions: list[str], label: str) -> str:
    """The revision of a database with these table names and version-table rows; refuses a foreign one."""
    if VERSION_TABLE not in tables:
        if not tables:
            return EMPTY
        raise NotATownletDatabase(
            f"{label} is not a townlet database (it has tables but no {VERSION_TABLE}): "
            "point --db at a townlet database or a new file"
        )
    if len(versions) == 1:
        return versions[0]
    if not versions and tables == {VERSION_TABLE}:
        return EMPTY
    if not versions:
        raise NotATownletDatabase(f"{label} has townlet's version table but no revision: point --db at another file")
    raise NotATownletDatabase(f"{label} has {len(versions)} schema heads: it was not written by townlet")


def require_head(revision: str, label: str, *, db_flag: str) -> None:
    """Refuse a database whose schema is not this code's head, saying which way to upgrade."""
    if revision == HEAD_REVISION:
        return
    if revision == EMPTY:
        raise NotATownletDatabase(f"{label} is empty: train into it first (townlet-telemetry train {db_flag})")
    schema = SCHEMA_BY_REVISION.get(revision)
    if schema is not None and schema < SCHEMA_VERSION:
        raise DatabaseTooOld(
            f"database is at schema {schema}, this townlet needs {SCHEMA_VERSION}: "
            f"run `townlet-telemetry db upgrade {db_flag}`"
        )
    raise DatabaseTooNew(
        f"database is at revision {revision}, newer than this townlet (schema {SCHEMA_VERSION}, revision "
        f"{HEAD_REVISION}): upgrade townlet (pip install -U townlet-telemetry)"
    )
