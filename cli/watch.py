"""``townlet-telemetry watch``: a live table of the agents of a running trainer."""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from townlet.errors import TelemetryError
from townlet.telemetry.dto import DTO_BY_VERSION, FIELD_NAMES
from townlet.telemetry.payloads import EPISODE_KIND, HELLO_KIND, UnknownSchemaVersionError, decode
from townlet_cli.console import make_console

if TYPE_CHECKING:
    from rich.table import Table

HIDDEN = ("agent_idx", "episode")
SHORT = {
    "survival_steps": "survival",
    "baseline_survival_steps": "baseline",
    "episode_reward": "reward",
    "epsilon": "ε",
    "curriculum_stage": "stage",
    "death_cause": "cause",
    "action_entropy": "entropy",
}


def header(name: str) -> str:
    """A short column header for a DTO field (``meter_energy`` -> ``energy``, ``visits_bed`` -> ``bed#``)."""
    if name.startswith("visits_"):
        return name.removeprefix("visits_") + "#"
    return SHORT.get(name, name.removeprefix("meter_").replace("_", " "))


def agents_table(envelope: dict[str, Any], max_rows: int) -> "Table":
    """One row per agent, one column per field of the envelope's schema version."""
    from rich.table import Table

    agents = envelope["agents"]
    table = Table(
        title=f"run {envelope['run_id']} · episode {envelope['episode']} · schema v{envelope['schema_version']}",
        caption=f"showing {min(len(agents), max_rows)} of {len(agents)} agents" if len(agents) > max_rows else None,
    )
    known = FIELD_NAMES[DTO_BY_VERSION[envelope["schema_version"]]]
    present = list(agents[0]) if agents else []
    fields = [k for k in known if k in present] + [k for k in present if k not in known]  # DTO order first
    fields = [k for k in fields if k not in HIDDEN]
    table.add_column("agent", justify="right")
    for name in fields:
        table.add_column(header(name), justify="left" if name == "death_cause" else "right")
    for agent in agents[:max_rows]:
        cells = [f"{v:.2f}" if isinstance(v, float) else str(v) for v in (agent.get(f, "") for f in fields)]
        table.add_row(str(agent["agent_idx"]), *cells)
    return table


class LiveConnectionError(TelemetryError):
    """The watch client could not reach the live stream."""


def watch(
    url: Annotated[
        str, typer.Argument(help="Live stream address, as printed by `train --live`.")
    ] = "ws://127.0.0.1:8765",
    count: Annotated[int | None, typer.Option("--count", help="Stop after this many episodes.", min=1)] = None,
    max_rows: Annotated[int, typer.Option("--max-rows", help="Agents shown in the table.", min=1)] = 32,
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
                    live.update(agents_table(message, max_rows))
                    seen += 1
                    if count is not None and seen >= count:
                        break
        except ConnectionClosed:
            pass  # the trainer finished or stopped: the table shows its last episode
    if not console.is_terminal:
        console.line()
    console.print(f"watched {seen} episode(s)")
