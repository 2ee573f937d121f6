"""The Typer app behind ``townlet-telemetry``; user-fixable errors are caught here, once."""

from typing import Any

import typer
from typer.core import TyperGroup

from townlet.errors import TelemetryError
from townlet_cli import audit, db
from townlet_cli.export import export
from townlet_cli.replay import replay
from townlet_cli.runs import episodes, runs
from townlet_cli.train import train
from townlet_cli.watch import watch


class TownletGroup(TyperGroup):
    """The CLI's edge: a ``TelemetryError`` from any command becomes one line on stderr and exit code 2."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TelemetryError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None


app = typer.Typer(
    cls=TownletGroup,
    name="townlet-telemetry",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs reflow to the terminal
)
app.command()(train)
app.command()(watch)
app.command()(runs)
app.command()(episodes)
app.command()(replay)
app.add_typer(audit.app, name="audit")
app.command()(export)
app.add_typer(db.app, name="db")


@app.callback()
def root() -> None:
    """Train townlet agents and read their per-agent telemetry back from the database.

    Read commands (runs, episodes, replay, audit, export) open the database read-only and never change it.

    Example: townlet-telemetry train --episodes 30 --agents 8 --seed 0 && townlet-telemetry replay --episode 30
    """


def main() -> None:
    """Entry point of the ``townlet-telemetry`` console script."""
    app()
