"""``townlet-telemetry db``: upgrade, downgrade, and inspect a database's schema revision."""

from typing import Annotated

import typer

from townlet.persistence import revisions
from townlet.persistence.errors import DatabaseTooNew
from townlet_cli.console import make_console
from townlet_cli.options import DEFAULT, DbOption

app = typer.Typer(
    help=(
        "Create, upgrade, downgrade and check a townlet database's schema.\n\n"
        "Example: townlet-telemetry db current --db townlet.db"
    ),
    no_args_is_help=True,
)


def _describe(revision: str) -> str:
    if revision == revisions.EMPTY:
        return "empty (no schema yet)"
    schema = revisions.SCHEMA_BY_REVISION.get(revision)
    return (
        f"revision {revision} (schema {schema})"
        if schema is not None
        else f"revision {revision} (unknown to this townlet)"
    )


@app.command()
def upgrade(
    db: DbOption = DEFAULT,
    to: Annotated[str, typer.Option("--to", help="Target revision (default: this townlet's head).")] = "head",
) -> None:
    """Upgrade the database's schema to this townlet's version (creating it in a new database).

    Example: townlet-telemetry db upgrade --db townlet.db
    """
    from townlet.persistence import migrate  # SQLAlchemy and Alembic load only for the db commands
    from townlet.persistence.store import TelemetryStore

    console = make_console()
    with TelemetryStore.open_unchecked(db, write=True) as store, store.transaction() as connection:
        before = migrate.database_revision(connection, store.label)
        if before != revisions.EMPTY and before not in migrate.script_revisions():
            raise DatabaseTooNew(
                f"{store.label} is at revision {before}, newer than this townlet knows: upgrade townlet instead"
            )
        migrate.upgrade(connection, to)
        after = migrate.database_revision(connection, store.label)
    store.use_wal()
    if before == after:
        console.print(f"{store.label} is already at {_describe(after)}")
    else:
        console.print(f"upgraded {store.label} from {_describe(before)} to {_describe(after)}")


@app.command()
def downgrade(
    revision: Annotated[str, typer.Argument(help="Revision to go back to, e.g. 0001, or 'base' for none.")],
    db: DbOption = DEFAULT,
) -> None:
    """Downgrade the database's schema to REVISION, dropping only what later revisions added.

    Example: townlet-telemetry db downgrade 0001 --db townlet.db
    """
    from townlet.persistence import migrate  # SQLAlchemy and Alembic load only for the db commands
    from townlet.persistence.store import TelemetryStore

    console = make_console()
    known = migrate.script_revisions()
    if revision not in (*known, "base"):
        raise typer.BadParameter(f"unknown revision {revision!r}: choose one of {', '.join((*known, 'base'))}")
    with TelemetryStore.open_unchecked(db, write=True) as store, store.transaction() as connection:
        before = migrate.database_revision(connection, store.label)
        if before == revisions.EMPTY:
            console.print(f"{store.label} has no schema: nothing to downgrade")
            return
        migrate.downgrade(connection, revision)
    console.print(f"downgraded {store.label} from {_describe(before)} to {revision}")


@app.command()
def current(db: DbOption = DEFAULT) -> None:
    """Show the database's schema revision and whether this townlet can use it (read-only).

    Example: townlet-telemetry db current --db townlet.db
    """
    from townlet.persistence import migrate  # SQLAlchemy and Alembic load only for the db commands
    from townlet.persistence.store import TelemetryStore

    console = make_console()
    with TelemetryStore.open_unchecked(db, write=False) as store, store.transaction() as connection:
        revision = migrate.database_revision(connection, store.label)
    status = (
        "up to date"
        if revision == revisions.HEAD_REVISION
        else f"this townlet needs {_describe(revisions.HEAD_REVISION)}"
    )
    console.print(f"{store.label}: {_describe(revision)}, {status}")


@app.command()
def check(db: DbOption = DEFAULT) -> None:
    """Check that the models and the migrated database agree (like `alembic check`); exit 1 when they differ.

    Example: townlet-telemetry db check --db townlet.db
    """
    from townlet.persistence import migrate  # SQLAlchemy and Alembic load only for the db commands
    from townlet.persistence.store import TelemetryStore

    console = make_console()
    with TelemetryStore.open(db, write=False) as store, store.transaction() as connection:
        differences = migrate.model_differences(connection)
    if differences:
        for difference in differences:
            console.print(f"difference: {difference}", markup=False)
        raise typer.Exit(code=1)
    console.print(f"{store.label}: models and migrations agree at {_describe(revisions.HEAD_REVISION)}")
