"""``BackgroundWriter``: the trainer hands finished episodes to a thread that writes them to the store.

The queue is bounded. Training never waits on the database unless the queue is full; then it blocks
(nothing is ever dropped) and the time it waited is counted. A fault that may pass (another process holds
the SQLite lock, the disk is full, the server restarts) is retried with backoff, and ``status()`` says so
("database busy, N episodes queued") for the progress line; once it passes, every episode is written
exactly once: after a failed attempt, whose commit outcome may be unknown, the writer looks up
``(run, episode)`` before writing it again. Only the user gives up (Ctrl-C): then ``unwritten`` lists the
episodes that never reached the database. Any other write error is re-raised in the training thread at the
next ``submit()`` or at ``close()``; it is never swallowed.
"""

import queue
import threading
import time
from collections.abc import Callable

from sqlalchemy import Connection

from townlet.persistence.errors import FAULT_WORDS, DatabaseRetryable
from townlet.persistence.store import EpisodeMeta, StoredCheckpoint, TelemetryStore
from townlet.telemetry.dto import AgentColumns
from townlet.wording import counted

#: How long one write attempt waits for another process's SQLite lock before the writer backs off.
ATTEMPT_BUSY_MS = 500
#: Backoff between attempts: doubles from the first to the last value.
FIRST_BACKOFF_S, MAX_BACKOFF_S = 0.05, 2.0
#: How often a blocked trainer wakes up to report the wait and check for Ctrl-C.
POLL_S = 0.2
#: After Ctrl-C, how long a failing database gets to recover before the writer gives up.
GRACE_S = 1.0
#: How long giving up waits for the write attempt in progress to end (commit or fail) before the summary.
GIVE_UP_WAIT_S = 5.0

Item = tuple[EpisodeMeta, AgentColumns, StoredCheckpoint | None]


def never() -> bool:
    """The default ``stop``: training is never asked to stop."""
    return False


def ignore(status: str) -> None:
    """The default ``on_wait``: nobody is told about a wait."""
    return None


class BackgroundWriter:
    """Owns the writer thread, its bounded queue, and the counts of what was written, waited and given up."""

    def __init__(
        self,
        store: TelemetryStore,
        run: int,
        *,
        max_queued: int = 16,
        keep_checkpoints: int = 1,
        before_write: Callable[[], object] = lambda: None,
        guard: Callable[[Connection], object] = lambda connection: None,
    ) -> None:
        """``before_write`` runs on the writer thread before every write attempt: the session verifies its run
        lock there and re-takes it when the connection holding it died (a server restart drops it, even one
        that happened while the writer was idle and whose reconnect nobody noticed). A retryable error from it
        is waited out like a failed write; any other (another process took the run) stops training. ``guard``
        runs inside each episode's transaction (``TelemetryStore.write_episode``)."""
        self.store = store
        self.run = run
        self.keep_checkpoints = keep_checkpoints
        self.before_write = before_write
        self.guard = guard
        self._queue: queue.Queue[Item] = queue.Queue(maxsize=max_queued)
        self._closing = threading.Event()
        self._abandon = threading.Event()
        self._lock = threading.Lock()
        self._current: Item | None = None
        self._error: BaseException | None = None
        self.committed: list[int] = []  # episodes whose transaction committed, in order: what summaries count
        self.blocked_s = 0.0
        self.blocked_count = 0
        self.retries = 0
        self.fault: str | None = None  # the retryable fault being waited out; None while writes succeed
        self.fault_state = "busy"  # what the last fault said: a FAULT_WORDS key (busy, unavailable, full, failing)
        self.unwritten: list[int] = []  # episodes given up (Ctrl-C) or drained after a fatal error
        self._thread = threading.Thread(target=self._work, name="townlet-writer", daemon=True)
        self._thread.start()

    # -- training thread ------------------------------------------------------------------------

    @property
    def written(self) -> int:
        """Episodes committed so far."""
        return len(self.committed)

    def in_flight(self) -> int | None:
        """After ``close()``: the episode whose write attempt was still running when the writer gave up (it may
        yet commit, or not), or None. Summaries call it neither written nor unwritten."""
        current = self._current
        return current[0].episode if current is not None and self._thread.is_alive() else None

    @property
    def queued(self) -> int:
        """Episodes handed over and not yet written (the one being written included)."""
        return self._queue.qsize() + (self._current is not None)

    def status(self) -> str:
        """``""`` while writes succeed; otherwise what is being waited out, for the progress line."""
        fault = self.fault
        if fault is None:
            return ""
        return f"{FAULT_WORDS[self.fault_state][0]}, {counted(self.queued, 'episode')} queued, retrying ({fault})"

    def submit(
        self,
        episode: EpisodeMeta,
        agents: AgentColumns,
        *,
        checkpoint: StoredCheckpoint | None = None,
        stop: Callable[[], bool] = never,
        on_wait: Callable[[str], None] = ignore,
    ) -> bool:
        """Queue one episode (and the learner checkpoint taken after it, written in the same transaction);
        blocks only while the queue is full, reporting through ``on_wait``.

        Returns False when ``stop()`` turned true while blocked: the episode was not queued (it counts as
        unwritten) and the caller should stop training.
        """
        self._raise_if_failed()
        item = (episode, agents, checkpoint)
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            pass
        started = time.perf_counter()
        self.blocked_count += 1
        try:
            while True:
                try:
                    self._queue.put(item, timeout=POLL_S)
                    return True
                except queue.Full:
                    self._raise_if_failed()
                    on_wait(self.status() or f"writer behind, {counted(self.queued, 'episode')} queued")
                    if stop():
                        with self._lock:
                            self.unwritten.append(episode.episode)
                        return False
        finally:
            self.blocked_s += time.perf_counter() - started

    def close(self, *, stop: Callable[[], bool] = never, on_wait: Callable[[str], None] = ignore) -> None:
        """Write everything queued, stop the thread, and raise the first write error if there was one.

        While a retryable fault lasts, waits for it to pass (reporting through ``on_wait``). Gives up on what
        is still queued when ``stop()`` is true and the fault outlasts ``GRACE_S``, or at a KeyboardInterrupt.
        """
        self._closing.set()
        stopping_since: float | None = None
        try:
            while self._thread.is_alive():
                self._thread.join(POLL_S)
                if self.fault is not None:
                    on_wait(self.status())
                if stop():
                    stopping_since = stopping_since or time.monotonic()
                    if self.fault is not None and time.monotonic() - stopping_since >= GRACE_S:
                        self.give_up()
        except KeyboardInterrupt:
            self.give_up()
        self._raise_if_failed()

    def give_up(self) -> None:
        """Stop retrying: whatever is not written now is listed in ``unwritten``. Returns once the attempt in
        progress has ended (within ~1 s on SQLite), or after ``GIVE_UP_WAIT_S``, when ``in_flight()`` names it."""
        self._abandon.set()
        self._thread.join(GIVE_UP_WAIT_S)

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    # -- writer thread --------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=POLL_S / 4)
            except queue.Empty:
                if self._closing.is_set() or self._abandon.is_set():
                    return
                continue
            self._current = item
            try:
                if self._error is None and not self._abandon.is_set() and self._write(item):
                    with self._lock:
                        self.committed.append(item[0].episode)
                else:
                    with self._lock:
                        self.unwritten.append(item[0].episode)
            except BaseException as exc:
                self._error = exc  # re-raised in the training thread; the queue keeps draining
                with self._lock:
                    self.unwritten.append(item[0].episode)
            finally:
                self._current = None

    def _write(self, item: Item) -> bool:
        """Write one episode, waiting out retryable faults; False when given up before it was written."""
        episode, agents, checkpoint = item
        delay, failed_before = FIRST_BACKOFF_S, False
        while not self._abandon.is_set():
            try:
                self.store.require_same_file()
                self.before_write()
                # After a failed attempt the commit may have happened (a connection lost during COMMIT).
                if not (failed_before and self.store.has_episode(self.run, episode.episode, ATTEMPT_BUSY_MS)):
                    self.store.write_episode(
                        self.run,
                        episode,
                        agents,
                        checkpoint=checkpoint,
                        keep_checkpoints=self.keep_checkpoints,
                        busy_timeout_ms=ATTEMPT_BUSY_MS,
                        guard=self.guard,
                    )
                self.store.bound_wal()  # a dashboard reading beside the trainer never lets the -wal grow unbounded
                self.fault = None
                return True
            except DatabaseRetryable as exc:
                self.fault, self.fault_state = exc.reason, exc.state
                self.retries += 1
                failed_before = True
                self._abandon.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
        return False
