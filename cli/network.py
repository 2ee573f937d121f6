"""Addresses and URLs the CLI is given: which ones other machines can reach, and which are websocket URLs."""

import ipaddress
from typing import TYPE_CHECKING

from townlet.errors import TelemetryError

if TYPE_CHECKING:
    from rich.console import Console


class NotAWebsocketURL(TelemetryError):
    """A URL that should name a live stream (``ws://HOST:PORT``) does not."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_if_reachable(console: "Console", option: str, host: str, what: str, unit: str) -> None:
    """One warning line when ``host`` is reachable from other machines: what it serves has no authentication."""
    if is_loopback(host):
        return
    console.print(
        f"warning: {option} {host} is reachable from other machines and the {what} is unauthenticated: "
        f"anyone who can reach it can read every {unit}; prefer 127.0.0.1",
        style="yellow",
    )


def require_websocket_url(url: str, option: str = "") -> None:
    """Refuse, in one line, a ``url`` that is not ``ws://`` or ``wss://`` (``option`` names the flag it came from)."""
    from websockets.exceptions import InvalidURI
    from websockets.uri import parse_uri

    try:
        parse_uri(url)
    except InvalidURI:
        where = f"{option} " if option else ""
        raise NotAWebsocketURL(f"{where}{url!r} is not a websocket URL: use e.g. ws://127.0.0.1:8765") from None
