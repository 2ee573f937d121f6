"""``BackgroundWriter``: the trainer hands finished episodes to a thread that writes them to the store.

The queue is bounded. Training never waits on the disk unless the queue is full; then it blocks (nothing is
ever dropped) and the time it waited is counted. ``close()`` flushes everything queued. A write that fails
is re-raised in the training thread at the next ``submit()`` or at ``close()``; it is never swallowed.
"""

import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

from townlet.persistence.store import EpisodeMeta, TelemetryStore

_STOP = object()


class BackgroundWriter:
    """Owns the writer thread, its bounded queue, and the counts of episodes written and time blocked."""

    def __init__(self, store: TelemetryStore, run: int, *, max_queued: int = 16) -> None:
        self.store = store
        self.run = run
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queued)
        self._thread = threading.Thread(target=self._work, name="townlet-writer", daemon=True)
        self._error: BaseException | None = None
        self.written = 0
        self.blocked_s = 0.0
        self.blocked_count = 0
        self._thread.start()

    def submit(self, episode: EpisodeMeta, snapshots: Sequence[dict[str, Any]]) -> None:
        """Queue one episode for writing; blocks only while the queue is full."""
        self._raise_if_failed()
        try:
            self._queue.put_nowait((episode, snapshots))
        except queue.Full:
            started = time.perf_counter()
            self._queue.put((episode, snapshots))
            self.blocked_s += time.perf_counter() - started
            self.blocked_count += 1

    def close(self) -> None:
        """Write everything queued, stop the thread, and raise the first write error if there was one."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None:
                continue  # already failed: keep draining so the trainer never blocks, report once
            try:
                self.store.write_episode(self.run, *item)
                self.written += 1
            except BaseException as exc:
                self._error = exc
