"""Alembic environment for townlet.

From code (``townlet-telemetry db ...``, the trainer, the tests) the caller's open connection arrives in
``config.attributes["connection"]`` and is reused; it must be in a ``migration_transaction`` (on SQLite,
foreign keys off while tables are rebuilt). From a checkout (``alembic upgrade head``) the database is
``-x db=PATH_OR_URL``, else ``$TOWNLET_DB``, else ``./townlet.db``.
"""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, Engine

from townlet.persistence.engine import database_url, make_engine, migration_transaction
from townlet.persistence.location import default_db
from townlet.persistence.models import Base
from townlet.persistence.revisions import VERSION_TABLE

config = context.config
target_metadata = Base.metadata

# From a checkout (`alembic upgrade head`) alembic.ini's logging sections say what ran; from code there is
# no ini file and the caller (the CLI) reports in its own words.
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,
        compare_type=True,
        **kwargs,
    )


def _database() -> str:
    return context.get_x_argument(as_dictionary=True).get("db") or default_db()


def run_migrations_offline() -> None:
    _configure(url=database_url(_database()), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if isinstance(connectable, Connection):  # townlet's own code: reuse its connection and transaction
        _run(connectable)
        return
    if isinstance(connectable, Engine):  # e.g. pytest-alembic hands over an engine
        _run_on(connectable)
        return
    engine = make_engine(database_url(_database()), read_only=False)
    try:
        _run_on(engine)
    finally:
        engine.dispose()


def _run_on(engine: Engine) -> None:
    """Migrate in a transaction of our own (on SQLite with foreign keys off: see migration_transaction)."""
    with engine.connect() as connection, migration_transaction(connection):
        _run(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
