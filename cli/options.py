"""Options shared by several commands."""

from typing import Annotated

import typer
from typer._click.types import IntRange

from townlet.persistence.location import DB_ENV_VAR, DEFAULT_DB, INT64_MAX

#: Exit code of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130


class AtLeast(IntRange):
    """An integer option's range, shown as users read it (``x>=1``); the int64 ceiling every stored integer
    has is checked too, never shown (``[1<=x<=9223372036854775807]`` took a third of an 80-column line)."""

    name = "int"

    def __init__(self, low: int, high: int | None = None) -> None:
        super().__init__(min=low, max=high)

    def convert(self, value: object, param: object, ctx: object) -> int:  # type: ignore[override]
        number = super().convert(value, param, ctx)  # type: ignore[arg-type]
        if number > INT64_MAX:
            self.fail(f"{number} is too large: at most {INT64_MAX}", param, ctx)  # type: ignore[arg-type]
        return number


DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar=DB_ENV_VAR,
        metavar="PATH|URL",
        help=f"A SQLite file, or a PostgreSQL URL (postgresql+psycopg://...; the README's team database); "
        f"also ${DB_ENV_VAR}.",
        show_default=True,
    ),
]
DEFAULT = DEFAULT_DB

RunOption = Annotated[
    int | None, typer.Option("--run", "-r", help="Run id (see `runs`); default: the latest run.", click_type=AtLeast(1))
]
AgentOption = Annotated[int | None, typer.Option("--agent", "-a", help="Only this agent index.", click_type=AtLeast(0))]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON on stdout (nothing else goes there).")]
CsvFlag = Annotated[bool, typer.Option("--csv", help="Print CSV with a header row on stdout.")]
