"""``StopAfterEpisode``: turns the first Ctrl-C into a request to stop once the current episode ends."""

import signal
import threading
from types import FrameType, TracebackType


class StopAfterEpisode:
    """Owns the SIGINT handler while training: first Ctrl-C sets ``requested``, a second one interrupts now."""

    def __init__(self) -> None:
        self.requested = False
        self._settled = False
        self._previous: object = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._settled:
            return  # training is over: the summary is printed whole, whatever is pressed meanwhile
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def settle(self) -> None:
        """Training has ended: from now until the handler is restored, Ctrl-C changes nothing."""
        self._settled = True

    def __call__(self) -> bool:
        return self.requested

    def __enter__(self) -> "StopAfterEpisode":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]
