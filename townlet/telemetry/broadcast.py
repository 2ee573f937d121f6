"""The ``Broadcaster`` protocol the trainer publishes to, and ``FakeBroadcaster`` for tests."""

from typing import Any, Protocol

from townlet.telemetry.payloads import check_json_safe, encode


class Broadcaster(Protocol):
    """Anything that takes one envelope per episode; ``publish`` must never block training."""

    def publish(self, envelope: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class FakeBroadcaster:
    """Records every published envelope as the exact bytes a live client would receive."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.closed = False

    def publish(self, envelope: dict[str, Any]) -> None:
        check_json_safe(envelope, "envelope")
        self.messages.append(encode(envelope))

    def close(self) -> None:
        self.closed = True
