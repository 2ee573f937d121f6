"""``StopAfterEpisode``: turns the first Ctrl-C, SIGTERM or SIGHUP into a request to stop once the current
episode ends; a second one (or the grace period running out) interrupts at once.

A scheduler (SLURM, Kubernetes, ``timeout``) or a closed terminal asks a process to stop with SIGTERM or
SIGHUP and kills it a grace period later (30 s is usual). These signals mean what the first Ctrl-C means:
the session finishes its episode, stores the final checkpoint, marks the run ``interrupted`` and prints its
summary. Should that take longer than ``GRACE_S``, a ``SIGALRM`` stops it at once, as a second signal does,
so the process still exits on its own (flushing what the writer has) before the scheduler's SIGKILL.
"""

import signal
import threading
from types import FrameType, TracebackType

#: The signals that ask training to stop, and the exit code each one ends the process with (128 + signal).
STOP_SIGNALS = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}
#: After the first stop signal, how long the clean stop may take before training is interrupted at once.
GRACE_S = 20


class StopAfterEpisode:
    """Owns the SIGINT, SIGTERM and SIGHUP handlers while training: the first sets ``requested`` (and which
    signal in ``signum``), a second one interrupts now (``KeyboardInterrupt``), as does ``GRACE_S`` passing."""

    def __init__(self, grace_s: int = GRACE_S) -> None:
        self.requested = False
        self.signum: int | None = None
        self.forced: str | None = None  # what stopped training at once: "signal" (a second one) or "grace"
        self.grace_s = grace_s
        self._settled = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._settled:
            return  # training is over: the summary is printed whole, whatever is pressed meanwhile
        if signum == signal.SIGALRM or self.requested:
            self.forced = "grace" if signum == signal.SIGALRM else "signal"
            raise KeyboardInterrupt
        self.requested = True
        self.signum = signum
        if self._previous and self.grace_s > 0:
            signal.alarm(self.grace_s)

    @property
    def name(self) -> str:
        """How the stop was asked for, for the user: ``Ctrl-C``, ``SIGTERM`` or ``SIGHUP``."""
        if self.signum is None or self.signum == signal.SIGINT:
            return "Ctrl-C"
        return signal.Signals(self.signum).name

    @property
    def how(self) -> str:
        """How training was stopped, for the summary line."""
        if self.forced == "signal":
            return f"{self.name} twice, stopped at once"
        if self.forced == "grace":
            return f"{self.name}, then {self.grace_s} s without a clean stop: stopped at once"
        return self.name

    @property
    def exit_code(self) -> int:
        return STOP_SIGNALS.get(self.signum or signal.SIGINT, 130)

    def settle(self) -> None:
        """Training has ended: from now until the handlers are restored, stop signals change nothing."""
        self._settled = True
        if self._previous:
            signal.alarm(0)

    def __call__(self) -> bool:
        return self.requested

    def __enter__(self) -> "StopAfterEpisode":
        if threading.current_thread() is threading.main_thread():
            for signum in (*STOP_SIGNALS, signal.SIGALRM):
                if signum == signal.SIGHUP and signal.getsignal(signum) is signal.SIG_IGN:
                    continue  # started under nohup: a closed terminal is meant to change nothing
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._previous:
            signal.alarm(0)
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]
        self._previous.clear()
