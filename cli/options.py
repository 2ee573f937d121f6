"""Options shared by several commands."""

from typing import Annotated

import typer

from townlet.persistence.location import DB_ENV_VAR, DEFAULT_DB, INT64_MAX  # INT64_MAX: every integer option's bound

#: Exit code of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130

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

RunOption = Annotated[
    int | None, typer.Option("--run", "-r", help="Run id (see `runs`); default: the latest run.", min=1, max=INT64_MAX)
]
AgentOption = Annotated[int | None, typer.Option("--agent", "-a", help="Only this agent index.", min=0, max=INT64_MAX)]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON on stdout (nothing else goes there).")]
CsvFlag = Annotated[bool, typer.Option("--csv", help="Print CSV with a header row on stdout.")]
