"""The Typer app behind ``townlet-telemetry``; user-fixable errors and usage errors are caught here, once."""

import errno
import os
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.core import TyperGroup
from typer.exceptions import Abort

from townlet.errors import TelemetryError
from townlet_cli import audit, db, runs
from townlet_cli.compare import compare
from townlet_cli.export import export
from townlet_cli.options import INTERRUPTED
from townlet_cli.recordings import recordings
from townlet_cli.replay import replay
from townlet_cli.runs import episodes
from townlet_cli.serve import serve
from townlet_cli.train import train
from townlet_cli.watch import watch

#: Output that cannot be written for want of space (or a failing disk): one line, exit 2, like any refusal.
OUTPUT_FAULTS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}


def error_line(message: str) -> None:
    """The CLI's one way to refuse: ``error: ...`` in one line on stderr."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)


class TownletGroup(TyperGroup):
    """The CLI's edge: every refusal is one line on stderr, ``error: ...``, exit code 2.

    A ``TelemetryError`` from any command and click's usage errors (a bad value, a missing option, an
    unknown command) alike; ``--help`` is untouched. Ctrl-C outside training exits 130 with one line.
    """

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()  # here, not at exit: a full disk under a redirected stdout is one line too
            return result
        except TelemetryError as exc:
            error_line(str(exc))
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            error_line("interrupted (Ctrl-C)")
            raise typer.Exit(code=INTERRUPTED) from None
        except OSError as exc:
            if exc.errno not in OUTPUT_FAULTS:
                raise
            where = exc.filename or "standard output"
            error_line(f"cannot write {where} ({exc.strerror}): free some space, or write somewhere else")
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - what is still buffered must not fail again at exit
            raise typer.Exit(code=2) from None

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any
    ) -> Any:
        standalone = extra.pop("standalone_mode", True)
        try:
            code = super().main(args, prog_name, standalone_mode=False, **extra)
        except NoArgsIsHelpError:
            code = 0  # a bare `townlet-telemetry`, `audit` or `db`: its help is printed (on stdout), as --help
        except UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "townlet-telemetry"
            error_line(f"{exc.format_message()} (see `{where} --help`)")
            code = exc.exit_code
        except ClickException as exc:
            error_line(exc.format_message())
            code = exc.exit_code
        except Abort:
            error_line("aborted")
            code = INTERRUPTED
        if not standalone:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=TownletGroup,
    name="townlet-telemetry",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs reflow to the terminal
)
app.command()(train)
app.command()(watch)
app.add_typer(runs.app, name="runs")
app.command()(episodes)
app.command()(replay)
app.command()(recordings)
app.command()(compare)
app.add_typer(audit.app, name="audit")
app.command()(export)
app.add_typer(db.app, name="db")
app.command()(serve)


def _print_version(value: bool) -> None:
    if not value:
        return
    from townlet import __version__
    from townlet.persistence.revisions import HEAD_REVISION
    from townlet.telemetry.dto import SCHEMA_VERSION

    typer.echo(
        f"townlet-telemetry {__version__} (telemetry schema {SCHEMA_VERSION}, database revision {HEAD_REVISION})"
    )
    raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the package version, telemetry schema and database revision.",
            is_eager=True,
            callback=_print_version,
        ),
    ] = False,
) -> None:
    """Train townlet agents and read their per-agent telemetry back from the database.

    Read commands (runs, episodes, replay, audit, export, serve) open the database read-only and never change it.

    Example: townlet-telemetry train --episodes 30 --agents 8 --seed 0 && townlet-telemetry replay --episode 30
    """


def main() -> None:
    """Entry point of the ``townlet-telemetry`` console script."""
    app()
