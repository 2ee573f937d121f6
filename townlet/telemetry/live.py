"""``WebSocketBroadcaster``: serves every connected client from a background thread, never stalling training.

Each client has a bounded queue: when a client reads slower than episodes arrive, the oldest queued
envelope is dropped and counted. ``publish`` only hands the encoded bytes to the server's event loop.

Grid frames (``grid_frame`` messages, the live grid) go only to clients that asked for them by sending the
text ``SUBSCRIBE_FRAMES``: a client that never asks (every client before townlet 0.10) receives exactly the
stream it always did. Each subscriber holds at most ``FRAME_QUEUE`` frames; older ones are dropped and counted,
and each frame's ``frame`` sequence number lets the client count what it missed.
"""

import asyncio
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from townlet.errors import TelemetryError
from townlet.telemetry.payloads import SUBSCRIBE_FRAMES, encode

#: Handshakes the stream accepts: no ``Origin`` (the ``watch`` CLI, scripts) or a page served from this
#: machine. A page on any other site cannot read the stream from a researcher's browser.
ALLOWED_ORIGINS: tuple[str | re.Pattern[str] | None, ...] = (
    None,
    re.compile(r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"),
)


class LiveStreamError(TelemetryError):
    """The live stream could not start (bad address, port in use)."""


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``127.0.0.1:8765``, ``[::1]:8765``) -> (host, port)."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise LiveStreamError(f"live address {address!r} is not HOST:PORT: use e.g. --live 127.0.0.1:8765")
    return host, int(port)


#: Frames a subscriber may have waiting; a slow one loses the oldest (the grid shows the newest).
FRAME_QUEUE = 4


@dataclass(eq=False)
class _Client:
    queue: deque[str]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: int = 0
    frames: deque[str] | None = None  # set once the client subscribes to grid frames
    gone: bool = False  # the client closed its side


class WebSocketBroadcaster:
    """Owns a websocket server on its own thread and event loop, and one bounded queue per client.

    Every client first receives ``hello`` (when given), then one text message per published envelope.
    A handshake from a web page of another site (its ``Origin`` header) is refused with HTTP 403.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8765,
        *,
        queue_size: int = 64,
        hello: dict[str, Any] | None = None,
        hello_later: bool = False,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.host = host
        self.port = port
        self.queue_size = queue_size
        self._hello = encode(hello).decode() if hello is not None else None
        self._hello_later = hello_later  # clients wait for set_hello() (the run is created after binding)
        self._clients: set[_Client] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future[None] | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._closing = False
        self._thread: threading.Thread | None = None
        self.published = 0
        self.dropped = 0
        self.clients_served = 0
        self.frames_published = 0
        self.frames_dropped = 0
        self.frame_subscribers = 0  # read by the trainer: no frame is built while nobody watches the grid

    def set_hello(self, hello: dict[str, Any]) -> None:
        """The first message every client receives; clients that connect before it is set wait for it."""
        self._hello = encode(hello).decode()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    def start(self) -> "WebSocketBroadcaster":
        """Bind and start serving; raises ``LiveStreamError`` when the address cannot be used."""
        self._thread = threading.Thread(target=self._run, name="townlet-live", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise LiveStreamError(
                f"cannot serve live telemetry on {self.host}:{self.port} ({self._error}): "
                "pick a free port with --live HOST:PORT"
            )
        return self

    def publish(self, envelope: dict[str, Any]) -> None:
        """Queue one envelope for every connected client; returns at once."""
        if self._loop is None:
            raise RuntimeError("publish() before start()")
        text = encode(envelope).decode()
        self.published += 1
        self._loop.call_soon_threadsafe(self._fan_out, text)

    def publish_frame(self, frame: dict[str, Any]) -> None:
        """Queue one grid frame for the clients that subscribed; returns at once."""
        if self._loop is None:
            raise RuntimeError("publish_frame() before start()")
        text = encode(frame).decode()
        self.frames_published += 1
        self._loop.call_soon_threadsafe(self._fan_out_frame, text)

    def close(self, drain_timeout: float = 2.0) -> None:
        """Give clients up to ``drain_timeout`` seconds to receive what is queued, then stop the server."""
        if self._loop is None or self._thread is None:
            return
        loop = self._loop
        asyncio.run_coroutine_threadsafe(self._drain(drain_timeout), loop).result(drain_timeout + 5)
        loop.call_soon_threadsafe(self._shut_down)
        self._thread.join(10)
        self._loop = None

    # -- event-loop side ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            if self._ready.is_set():
                raise  # failed while serving: let the thread's excepthook report it
            self._error = exc  # failed to bind: start() turns it into a LiveStreamError
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        server: Server = await serve(
            self._handle, self.host, self.port, compression=None, close_timeout=1, origins=ALLOWED_ORIGINS
        )
        sockets = list(server.sockets)
        if self.port == 0 and sockets:
            self.port = sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stop
        finally:
            server.close()
            await server.wait_closed()

    def _fan_out(self, text: str) -> None:
        for client in self._clients:
            if len(client.queue) == self.queue_size:
                client.queue.popleft()
                client.dropped += 1
                self.dropped += 1
            client.queue.append(text)
            client.wake.set()

    def _fan_out_frame(self, text: str) -> None:
        for client in self._clients:
            if client.frames is None:
                continue
            if len(client.frames) == FRAME_QUEUE:
                client.frames.popleft()
                self.frames_dropped += 1
            client.frames.append(text)
            client.wake.set()

    def _shut_down(self) -> None:
        self._closing = True
        for client in self._clients:
            client.wake.set()  # handlers see _closing and return, which closes their connection
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(None)

    async def _drain(self, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while any(c.queue for c in self._clients) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    async def _handle(self, websocket: ServerConnection) -> None:
        client = _Client(queue=deque())
        self._clients.add(client)
        self.clients_served += 1
        try:
            while self._hello is None and not self._closing and self._hello_later:
                await asyncio.sleep(0.01)
            if self._hello is not None:
                await websocket.send(self._hello)
            listening = asyncio.ensure_future(self._listen(websocket, client))
            try:
                while not self._closing and not client.gone:
                    await client.wake.wait()
                    client.wake.clear()
                    while client.queue and not self._closing:
                        await websocket.send(client.queue.popleft())
                    while client.frames and not client.queue and not self._closing:
                        await websocket.send(client.frames.popleft())
            finally:
                listening.cancel()
        except ConnectionClosed:
            pass  # the client went away: nothing to deliver any more
        finally:
            if client.frames is not None:
                self.frame_subscribers -= 1
            self._clients.discard(client)

    async def _listen(self, websocket: ServerConnection, client: _Client) -> None:
        """What a client says: only ``SUBSCRIBE_FRAMES`` means anything; anything else is ignored."""
        try:
            async for message in websocket:
                if message == SUBSCRIBE_FRAMES and client.frames is None:
                    client.frames = deque()
                    self.frame_subscribers += 1
        except ConnectionClosed:
            pass
        client.gone = True  # its handler stops waiting for messages to send, and forgets it
        client.wake.set()
