"""Who may ask the dashboard, and for how long: the Host rule, and bounds on idle, header time and connections.

**Host.** A web page on another site can point its own DNS name at 127.0.0.1 (DNS rebinding) and then read
whatever a loopback server answers, as the same origin. Its requests carry that name in ``Host``. The
dashboard answers only Host names it is served under: any IP literal (a rebinding page always has a name),
``localhost``, the ``--host`` it was started with, this machine's host name, and each ``--allow-host``.
Anything else gets ``421 Misdirected Request`` with one line naming the flag that admits it.

**Connections.** uvicorn arms no timer on a connection until its first response, so a client that sends
half a request line keeps a file descriptor forever (slowloris). ``BoundedH11Protocol`` closes a connection
whose request head has not arrived ``HEADER_TIMEOUT_S`` after it connected (or after its last response);
beyond ``MAX_CONNECTIONS`` it closes the one that has waited longest for its request head (never one being
answered), so a flood cannot shut a real request out; and ``RateLimitedLog`` lets a failing ``accept()``
(out of file descriptors during a flood) log one line per ``LOG_EVERY_S``, not one per attempt.
"""

import ipaddress
import logging
import socket
import time
from collections.abc import Iterable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

#: How long a connection may take to send a request's line and headers.
HEADER_TIMEOUT_S = 10.0
#: Idle keep-alive between requests (uvicorn's ``timeout_keep_alive``).
KEEP_ALIVE_S = 5
#: Open connections beyond this are closed as they arrive (well under the common 1024-descriptor limit).
MAX_CONNECTIONS = 256
#: A repeated log line (a failing accept) is written at most once per this many seconds.
LOG_EVERY_S = 10.0

WILDCARDS = {"0.0.0.0", "::", ""}


def allowed_hosts(bound: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host names (lower case, no port) the dashboard answers besides IP literals."""
    names = {"localhost", *(name.lower().strip("[]") for name in extra)}
    if bound not in WILDCARDS:
        names.add(bound.lower().strip("[]"))
    else:  # reachable from the network: by this machine's names too
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    return frozenset(names)


def host_name(header: str) -> str:
    """``Host`` without its port: ``[::1]:8000`` -> ``::1``, ``Example.org:80`` -> ``example.org``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostGuard:
    """ASGI middleware that answers ``421`` to a request whose ``Host`` is not one the dashboard serves."""

    def __init__(self, app: Any, allowed: frozenset[str]) -> None:
        self.app, self.allowed = app, allowed

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = next((value.decode("latin-1") for key, value in scope["headers"] if key == b"host"), "")
        name = host_name(header)
        if name and (name in self.allowed or is_ip_literal(name)):
            await self.app(scope, receive, send)
            return
        shown = name or "(none)"
        body = (
            f"this dashboard is not served as {shown!r} (a page on another site may be pointing its name here): "
            f"open it by address or as localhost, or start serve with --allow-host {name or 'NAME'}\n"
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 421,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on every request head and a cap on open connections."""

    _head_timer: Any = None
    _since = 0.0  # when the connection was made

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._since = time.monotonic()
        if len(self.connections) > MAX_CONNECTIONS:
            self._evict()
        self._arm()

    def _evict(self) -> None:
        """Over the cap: close the connection that has waited longest without sending a request head (a
        flood's), never one whose request is being answered; this new one only when none waits."""
        waiting = [c for c in self.connections if isinstance(c, BoundedH11Protocol) and c.conn.their_state is h11.IDLE]
        victim = min(waiting, key=lambda c: c._since, default=self)
        self.connections.discard(victim)  # closing now: it neither counts nor is chosen again
        victim.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # still waiting for (the rest of) a request's head
            self._arm()
        else:
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # idle now: uvicorn's keep-alive timer takes over until the next byte

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE:
            self.transport.close()


class RateLimitedLog(logging.Filter):
    """Lets a given message through at most once per ``LOG_EVERY_S`` (an ``accept()`` failing in a flood)."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = f"{record.name}:{record.msg}"
        now = time.monotonic()
        if now - self._last.get(key, -LOG_EVERY_S) < LOG_EVERY_S:
            return False
        self._last[key] = now
        return True
