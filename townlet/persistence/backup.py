"""Backups of a SQLite database before a schema change: a consistent copy next to it, named for what it holds.

``townlet.db`` at revision 0001 becomes ``townlet.db.bak-0001-20261125T133000Z``. The copy is taken with
SQLite's online backup API (a consistent snapshot even while a trainer writes), written under a temporary
name and renamed when complete, and never overwrites anything.
"""

import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from townlet.persistence.errors import DatabaseUnavailable
from townlet.persistence.location import connect_sqlite


def backup_path(path: Path, revision: str, when: datetime) -> Path:
    return path.with_name(f"{path.name}.bak-{revision}-{when.astimezone(UTC):%Y%m%dT%H%M%SZ}")


def backup_sqlite(path: Path, revision: str, when: datetime | None = None) -> Path:
    """Copy the database at ``path`` (at ``revision``) beside it; returns the backup's path."""
    target = backup_path(path, revision, when or datetime.now(UTC))
    if target.exists():
        raise DatabaseUnavailable(f"backup {target} already exists: wait a second and run the command again")
    partial = target.with_name(target.name + ".partial")
    try:
        with closing(connect_sqlite(path, read_only=True)) as source, closing(sqlite3.connect(partial)) as copy:
            source.backup(copy)
        partial.rename(target)
    except (OSError, sqlite3.Error) as exc:
        raise DatabaseUnavailable(
            f"cannot write a backup of {path} to {target} ({exc}): free space or pass --no-backup"
        ) from None
    finally:
        partial.unlink(missing_ok=True)
    return target
