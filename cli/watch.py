"""``townlet-telemetry watch``: a live table of the agents of a running trainer (or lines, or JSON lines)."""

import signal
import statistics
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from townlet.errors import TelemetryError
from townlet.telemetry.payloads import (
    EPISODE_KIND,
    FRAME_KIND,
    HELLO_KIND,
    SUBSCRIBE_FRAMES,
    UnknownSchemaVersionError,
    decode,
)
from townlet.wording import counted
from townlet_cli.agents_table import agents_table
from townlet_cli.console import make_console
from townlet_cli.network import require_websocket_url
from townlet_cli.options import AtLeast
from townlet_cli.output import ConflictingOptions

if TYPE_CHECKING:
    from rich.console import Console, Group

#: How often watch tries again while no trainer listens.
RETRY_S = 0.5


def episode_view(envelope: dict[str, Any], max_rows: int, run: int | None = None) -> "Group":
    """One episode envelope as the shared per-agent table."""
    name = f"run {run} ({envelope['run_id']})" if run is not None else f"run {envelope['run_id']}"
    title = f"{name} · episode {envelope['episode']} · schema v{envelope['schema_version']}"
    return agents_table(title, envelope["agents"], envelope["schema_version"], max_rows, "--max-rows N for more")


def episode_line(envelope: dict[str, Any], run: int | None) -> str:
    """One episode in one line, for a pipe or a log: survival across agents and the shared fields."""
    agents = envelope["agents"]
    survival = [a["survival_steps"] for a in agents]
    first = agents[0] if agents else {}
    return (
        f"run {run if run is not None else '?'} episode {envelope['episode']}: {counted(len(agents), 'agent')}, "
        f"survival mean {statistics.fmean(survival) if survival else 0:.1f} min {min(survival, default=0)} "
        f"max {max(survival, default=0)}, baseline {first.get('baseline_survival_steps', 0):.1f}, "
        f"ε {first.get('epsilon', 0):.3f}, stage {first.get('curriculum_stage', '?')}"
    )


class LiveConnectionError(TelemetryError):
    """The watch client could not reach the live stream."""


def watch(
    url: Annotated[
        str, typer.Argument(help="Live stream address, as printed by `train --live`.")
    ] = "ws://127.0.0.1:8765",
    count: Annotated[
        int | None, typer.Option("--count", help="Stop after this many episodes.", click_type=AtLeast(1))
    ] = None,
    max_rows: Annotated[int, typer.Option("--max-rows", help="Agents shown in the table.", click_type=AtLeast(1))] = 32,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            help="Seconds to wait for a trainer, at the start and after it goes away (0: do not wait).",
            min=0,
        ),
    ] = 30.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each episode's envelope as one JSON line on stdout, as received.")
    ] = False,
    grid: Annotated[
        bool,
        typer.Option(
            "--grid",
            help="Draw the live grid: the current episode's recorded agents, as the trainer sends frames "
            "(recording.live_fps a second).",
        ),
    ] = False,
) -> None:
    """Watch a running trainer's agents update episode by episode.

    Started before the trainer listens, it waits (saying so) up to --timeout seconds; when the trainer
    stops or restarts, it waits again and reconnects. On a terminal it draws the per-agent table; piped, it
    prints one line per episode; --json prints every episode envelope exactly as received (byte-identical
    to `replay --json`), one per line, and nothing else on stdout.

    --grid asks the trainer for its live grid frames and draws them (the recorded agents' cells and the
    first one's meters, the step, frames missed because this client was slow); piped, the frames are printed
    one after another. Episodes are then one line each on stderr.

    Messages whose schema_version this townlet does not know are refused with a one-line notice. Ends
    after --count episodes, when no trainer comes back within --timeout, or on Ctrl-C, with a one-line
    summary and exit code 0.

    Example: townlet-telemetry train --live 127.0.0.1:8765 & townlet-telemetry watch ws://127.0.0.1:8765
    """
    require_websocket_url(url)
    status = make_console(stderr=True)  # waits, connections and the summary; stdout carries only episodes
    data = make_console()
    if grid and as_json:
        raise ConflictingOptions("--grid draws the grid: drop --json (or --grid)")
    viewer = _Viewer(status, max_rows, as_json=as_json, table=data.is_terminal and not as_json, data=data, grid=grid)
    # Ctrl-C ends watch even where the process started with SIGINT ignored (a parent that ignores it passes
    # that on through exec, and watch would then wait out --timeout deaf to it).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _follow(url, viewer, status, count=count, timeout=timeout)
    except KeyboardInterrupt:
        pass  # Ctrl-C: the summary below is the answer
    finally:
        signal.signal(signal.SIGINT, previous)
        viewer.close()
    runs = ", ".join(str(r) for r in viewer.runs) or "none"
    frames = f" and {counted(viewer.frames, 'grid frame')} ({viewer.missed} missed)" if grid else ""
    status.print(
        f"watched {counted(viewer.seen, 'episode')}{frames} of {'run' if len(viewer.runs) == 1 else 'runs'} {runs} "
        f"from {url}"
    )


class _Viewer:
    """What watch shows: a live table on a terminal, otherwise a line (or the raw JSON) per episode."""

    def __init__(
        self, console: "Console", max_rows: int, *, as_json: bool, table: bool, data: "Console", grid: bool = False
    ) -> None:
        self.console, self.max_rows, self.as_json, self.grid, self.data = console, max_rows, as_json, grid, data
        self.seen = 0
        self.frames = 0
        self.missed = 0
        self._last_frame: int | None = None
        self.run: int | None = None
        self.runs: list[int | str] = []
        self._live: Any = None
        if table:
            from rich.live import Live
            from rich.table import Table

            self._live = Live(Table(title="waiting for the first episode"), console=data)
            self._live.start()

    def say(self, text: str) -> None:
        """A status line on stderr (above the live table on a terminal, which redirects stderr for it)."""
        self.console.print(text, markup=False)

    def hello(self, message: dict[str, Any]) -> None:
        self.run = message.get("run")
        run = self.run if self.run is not None else message.get("run_id")
        if run not in self.runs:
            self.runs.append(run)
        uuid = f"{message.get('run_id')}, " if self.run is not None else ""
        self.say(
            f"connected to run {run} ({uuid}{counted(message.get('num_agents') or 0, 'agent')}, "
            f"schema v{message['schema_version']})"
        )

    def connected(self) -> None:
        self._last_frame = None  # a new connection: its frames are counted afresh

    def frame(self, message: dict[str, Any]) -> None:
        """One live grid frame: drawn over the last on a terminal, printed after it otherwise."""
        from townlet_cli.grid_view import frame as draw

        self.frames += 1
        number = message["frame"]
        if self._last_frame is not None and number > self._last_frame + 1:
            self.missed += number - self._last_frame - 1
        self._last_frame = number
        agents = message["agents"]
        positions = {a: (r, c) for a, r, c in zip(agents, message["rows"], message["cols"], strict=True)}
        meters = list(zip(message["meters"], message["agent_meters"][0], strict=True)) if agents else []
        affordances = [(a["name"], a["row"], a["col"]) for a in message["affordances"]]
        status = (
            f"live · run {self.run if self.run is not None else message['run_id']} · episode {message['episode']} · "
            f"step {message['step']} · agent {agents[0] if agents else '-'} followed · frame {number} "
            f"({self.missed} missed)"
        )
        text = draw(message["grid_size"], affordances, positions, agents[0] if agents else None, meters, status)
        if self._live is not None:
            self._live.update(text)
        else:
            self.data.print(text, soft_wrap=False)
            self.data.print()

    def episode(self, raw: str | bytes, message: dict[str, Any]) -> None:
        self.seen += 1
        if self.grid:
            self.say(episode_line(message, self.run))
            return
        if self.as_json:
            out = sys.stdout.buffer
            out.write(raw.encode() if isinstance(raw, str) else raw)
            out.write(b"\n")
            out.flush()
        elif self._live is not None:
            self._live.update(episode_view(message, self.max_rows, self.run))
        else:
            print(episode_line(message, self.run), flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()


def _follow(url: str, viewer: _Viewer, status: "Console", *, count: int | None, timeout: float) -> None:
    """Connect (waiting up to ``timeout``), show what arrives, and reconnect when the trainer goes away."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    ever_connected = False
    while True:
        connection, last_error = None, ""
        deadline = time.monotonic() + timeout
        announced = False
        while connection is None:
            try:
                connection = connect(url, open_timeout=5, compression=None, max_size=None)
            except (OSError, TimeoutError) as exc:
                last_error = str(exc)
                if time.monotonic() >= deadline:
                    break
                if not announced:
                    viewer.say(f"waiting for the trainer at {url} (up to {timeout:g}s; Ctrl-C to stop)")
                    announced = True
                time.sleep(RETRY_S)
        if connection is None:
            if ever_connected:
                viewer.say(f"no trainer at {url} for {timeout:g}s: done")
                return
            raise LiveConnectionError(
                f"cannot connect to {url} ({last_error}) within {timeout:g}s: start "
                "`townlet-telemetry train --live HOST:PORT` first, or wait longer with --timeout"
            )
        ever_connected = True
        with connection:
            if viewer.grid:
                connection.send(SUBSCRIBE_FRAMES)  # only a client that asks gets the grid's frames
                viewer.connected()
            try:
                for raw in connection:
                    try:
                        message = decode(raw)
                    except UnknownSchemaVersionError as exc:
                        viewer.say(f"refused a message: {exc}")
                        continue
                    if message.get("kind") == HELLO_KIND:
                        viewer.hello(message)
                    elif message.get("kind") == FRAME_KIND and viewer.grid:
                        viewer.frame(message)
                    elif message.get("kind") == EPISODE_KIND:
                        viewer.episode(raw, message)
                        if count is not None and viewer.seen >= count:
                            return
            except ConnectionClosed:
                pass
        viewer.say(f"the trainer at {url} went away; waiting for it to come back")
