"""Options shared by several commands."""

from typing import Annotated

import typer

from townlet.persistence.location import DB_ENV_VAR, DEFAULT_DB

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar=DB_ENV_VAR,
        help=f"SQLite file path or SQLAlchemy URL (postgresql+psycopg://user@host/db); also ${DB_ENV_VAR}.",
        show_default=True,
    ),
]
DEFAULT = DEFAULT_DB
