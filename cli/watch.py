"""``townlet-telemetry watch``: a live table of the agents of a running trainer."""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from townlet.errors import TelemetryError
from townlet.telemetry.payloads import EPISODE_KIND, HELLO_KIND, UnknownSchemaVersionError, decode
from townlet_cli.agents_table import agents_table
from townlet_cli.console import make_console
from townlet_cli.options import INT64_MAX

if TYPE_CHECKING:
    from rich.console import Group


def episode_view(envelope: dict[str, Any], max_rows: int) -> "Group":
    """One episode envelope as the shared per-agent table."""
    title = f"run {envelope['run_id']} · episode {envelope['episode']} · schema v{envelope['schema_version']}"
    return agents_table(title, envelope["agents"], envelope["schema_version"], max_rows, "--max-rows N for more")


class LiveConnectionError(TelemetryError):
    """The watch client could not reach the live stream."""


def watch(
    url: Annotated[
        str, typer.Argument(help="Live stream address, as printed by `train --live`.")
    ] = "ws://127.0.0.1:8765",
    count: Annotated[
        int | None, typer.Option("--count", help="Stop after this many episodes.", min=1, max=INT64_MAX)
    ] = None,
    max_rows: Annotated[int, typer.Option("--max-rows", help="Agents shown in the table.", min=1, max=INT64_MAX)] = 32,
) -> None:
    """Watch a running trainer's agents update episode by episode.

    Messages whose schema_version this townlet does not know are refused with a one-line notice; the
    table keeps showing the versions it knows. Stops when the trainer ends (or after --count episodes).

    Example: townlet-telemetry train --live 127.0.0.1:8765 & townlet-telemetry watch ws://127.0.0.1:8765
    """
    from rich.live import Live
    from rich.table import Table
    from websockets.exceptions import ConnectionClosed, InvalidURI
    from websockets.sync.client import connect

    console = make_console()
    seen = 0
    try:
        connection = connect(url, open_timeout=5, compression=None, max_size=None)
    except InvalidURI:
        raise LiveConnectionError(f"{url!r} is not a websocket URL: use e.g. ws://127.0.0.1:8765") from None
    except (OSError, TimeoutError) as exc:
        raise LiveConnectionError(
            f"cannot connect to {url} ({exc}): start `townlet-telemetry train --live HOST:PORT` first"
        ) from None
    with connection, Live(Table(title=f"waiting for the first episode from {url}"), console=console) as live:
        try:
            for raw in connection:
                try:
                    message = decode(raw)
                except UnknownSchemaVersionError as exc:
                    live.console.print(f"refused a message: {exc}", markup=False)
                    continue
                if message.get("kind") == HELLO_KIND:
                    live.console.print(
                        f"connected to run {message.get('run_id')} ({message.get('num_agents')} agents, "
                        f"schema v{message['schema_version']})"
                    )
                elif message.get("kind") == EPISODE_KIND:
                    live.update(episode_view(message, max_rows))
                    seen += 1
                    if count is not None and seen >= count:
                        break
        except ConnectionClosed:
            pass  # the trainer finished or stopped: the table shows its last episode
    if not console.is_terminal:
        console.line()
    console.print(f"watched {seen} episode(s)")
