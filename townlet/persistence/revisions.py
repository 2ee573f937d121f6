"""Which schema a database is at, and whether this code can use it: no Alembic, no SQLAlchemy.

The one map between Alembic revision and telemetry ``schema_version`` lives here, so the read path (stdlib
``sqlite3`` on a file) and the write path (SQLAlchemy + Alembic) refuse an out-of-date database with the
same messages. A test fails when a shipped revision has no entry.

Two kinds of revision: one that adds a telemetry schema version (the DTO changes: 0001, 0002), and a storage
revision that changes only what the database keeps beside the telemetry (0003: learner checkpoints and run
states; 0004: per-episode rollups; 0005: maintained baseline flags and survival blocks; 0006: episode
recordings; 0007: run names and tags) under the same schema version. Either way the code needs its head
revision.
"""

from townlet.persistence.errors import DatabaseTooNew, DatabaseTooOld, NotATownletDatabase
from townlet.telemetry.dto import SCHEMA_VERSION

#: Alembic's version table, project-specific so a database shared with another Alembic tool never clashes.
VERSION_TABLE = "townlet_alembic_version"

#: Alembic revision -> the telemetry schema_version its tables hold, oldest first. One entry per revision.
SCHEMA_BY_REVISION: dict[str, int] = {
    "0001": 1, "0002": 2, "0003": 2, "0004": 2, "0005": 2, "0006": 2, "0007": 2,
}  # fmt: skip
#: What each revision added, as ``db current`` and ``db upgrade`` say it.
ADDED_BY_REVISION: dict[str, str] = {
    "0001": "runs, episodes, agent rows",
    "0002": "affordance visits, action entropy",
    "0003": "learner checkpoints, run states",
    "0004": "per-episode rollups",
    "0005": "maintained baseline flags, survival blocks",
    "0006": "episode recordings",
    "0007": "run names and tags",
}
HEAD_REVISION = list(SCHEMA_BY_REVISION)[-1]
assert SCHEMA_BY_REVISION[HEAD_REVISION] == SCHEMA_VERSION, "the head revision must hold this code's schema"

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
    if revision in SCHEMA_BY_REVISION:  # known, not head: older
        raise DatabaseTooOld(
            f"database is at {describe_revision(revision)}, this townlet needs {describe_revision(HEAD_REVISION)}: "
            f"run `townlet-telemetry db upgrade {db_flag}`"
        )
    raise DatabaseTooNew(
        f"database is at revision {revision}, newer than this townlet (schema {SCHEMA_VERSION}, revision "
        f"{HEAD_REVISION}): upgrade townlet (pip install -U townlet-telemetry)"
    )


def describe_revision(revision: str) -> str:
    """``revision 0003 (schema 2)``; a revision this code does not know says so."""
    if revision == EMPTY:
        return "empty (no schema yet)"
    schema = SCHEMA_BY_REVISION.get(revision)
    known = f"schema {schema}" if schema is not None else "unknown to this townlet"
    return f"revision {revision} ({known})"
