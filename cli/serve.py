"""``townlet-telemetry serve``: the web dashboard over the stored runs (and a running trainer's live stream)."""

import logging
import signal
import socket
from typing import Annotated

import typer

from townlet import defaults
from townlet.errors import TelemetryError
from townlet_cli.console import make_console
from townlet_cli.network import require_websocket_url, warn_if_reachable
from townlet_cli.options import DEFAULT, DbOption


class ServeError(TelemetryError):
    """The dashboard could not start (its address is in use or cannot be bound)."""


def serve(
    db: DbOption = DEFAULT,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; anything but loopback is reachable by others.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on.", min=0, max=65535)] = 8000,
    audits_above: Annotated[
        int,
        typer.Option(
            "--audits-above",
            help="Runs with more agent rows than this get a button for the reward audit instead of running it at once.",
            min=0,
        ),
    ] = defaults.AUDITS_ABOVE,
    live: Annotated[
        str | None,
        typer.Option(
            "--live", help="A trainer's live stream (train --live) for the page to follow, e.g. ws://127.0.0.1:8765."
        ),
    ] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="Also answer requests for this host name (repeatable), e.g. a name other machines use for this one.",
        ),
    ] = None,
) -> None:
    """Serve a web dashboard of the database's runs at http://HOST:PORT (read-only; Ctrl-C or SIGTERM stops it).

    Pages: the runs (names, tags, a filter, and checkboxes to compare runs); a comparison of groups of runs
    (IQM curves with bootstrap bands, the score table, P(X > Y), the config diff: `compare`); a run's charts
    (survival, baseline, reward, epsilon per episode, stage changes), its
    agents x episodes survival heat map, reward audit and baseline flags; an agent's trajectories; an
    episode's agents and its exact envelope. With --live the run page appends episodes as the trainer
    finishes them. The heat map and the baseline flags read what is kept as episodes are written and show at
    once; the reward audit reads every agent row: on a run bigger than --audits-above rows the page runs it
    when asked. The JSON endpoints under /api answer what the matching --json commands print
    (docs/telemetry_schema.md). The server never writes the database; the page loads nothing from other sites.

    It answers only requests addressed to it by an IP address, as localhost, by the --host given, by this
    machine's name (when --host is 0.0.0.0 or ::) or by an --allow-host name; any other Host gets 421 (a
    page on another site that points its own name here, DNS rebinding, reads nothing). A connection must
    send its request head within 10 s and may idle 5 s between requests; beyond 256 open connections, new
    ones are closed at once.

    Example: townlet-telemetry serve --db townlet.db --live ws://127.0.0.1:8765
    """
    from townlet.persistence.reader import TelemetryReader

    with TelemetryReader(db) as reader:  # refuse a missing, foreign, older or newer database now, in one line
        label = reader.label
    if live is not None:
        require_websocket_url(live, "--live")
    console = make_console(stderr=True)  # serve's lines are status; stdout stays empty
    warn_if_reachable(console, "--host", host, "dashboard", "run")
    sock = _bind(host, port)
    import uvicorn

    from townlet.web.app import create_app

    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    following = f", following {live}" if live else ""
    console.print(f"serving {label} on http://{shown}:{bound}{following} (Ctrl-C to stop)")
    from townlet.web.guard import KEEP_ALIVE_S, BoundedH11Protocol, RateLimitedLog, allowed_hosts

    app = create_app(db, live, audits_above, hosts=allowed_hosts(host, allow_host or ()))
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", http=BoundedH11Protocol, timeout_keep_alive=KEEP_ALIVE_S
    )
    server = uvicorn.Server(config)
    logging.getLogger("asyncio").addFilter(RateLimitedLog())  # a failing accept() in a flood: one line per 10 s
    # uvicorn shuts down gracefully on Ctrl-C or SIGTERM (answering the requests in flight), restores the
    # handlers it found and re-raises the signal: these handlers turn that into the one line below, exit 0.
    # SIGINT gets a handler of ours too: under Python's default one, asyncio.run turns the re-raised signal into
    # a cancel of its main task, which is lost when that task is already finishing (then nothing said Ctrl-C).
    previous = {sig: signal.signal(sig, _stopped_by) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
        how = ""
    except (KeyboardInterrupt, _Stopped) as stop:
        how = " (SIGTERM)" if isinstance(stop, _Stopped) and stop.args == (signal.SIGTERM,) else " (Ctrl-C)"
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.print(f"stopped{how}")


class _Stopped(Exception):
    """SIGTERM or SIGINT (its number is the argument) reached ``serve`` after uvicorn's graceful shutdown."""


def _stopped_by(signum: int, frame: object) -> None:
    raise _Stopped(signum)


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a busy port is a one-line error before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot serve on {host}:{port} ({exc.strerror or exc}): pick another --port") from None
    sock.listen(128)
    return sock
