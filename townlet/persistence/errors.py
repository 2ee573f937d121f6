"""Database errors a user can fix; each message names the fix (the CLI prints it in one line, exit code 2)."""

from townlet.errors import TelemetryError


class DatabaseError(TelemetryError):
    """Base of every persistence error the user can act on."""


class DatabaseNotFound(DatabaseError):
    """A reading command was pointed at a database that does not exist (and must not create it)."""


class NotATownletDatabase(DatabaseError):
    """The file or server holds something that is not a townlet database."""


class DatabaseTooOld(DatabaseError):
    """The database's schema is older than this code: ``db upgrade`` fixes it."""


class DatabaseTooNew(DatabaseError):
    """The database's schema is newer than this code: upgrading townlet fixes it."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot be opened or written (bad URL, permissions, server down)."""


class DatabaseRetryable(DatabaseUnavailable):
    """A fault that may pass: a lock another process holds, a full disk, a server restarting.

    The background writer retries it with backoff while training goes on; elsewhere it is one line.
    ``reason`` is the driver's own words (``database is locked``, ``database or disk is full``); ``state`` is
    ``unavailable`` when the server cannot be reached (stopped, restarting, the network), ``full`` when the
    disk refuses the write for want of space, ``failing`` when it refuses it otherwise (an I/O error, a
    file-size limit), else ``busy``; ``FAULT_WORDS`` says each to the user.
    """

    def __init__(self, message: str, reason: str = "", *, unavailable: bool = False, state: str = "busy") -> None:
        super().__init__(message)
        self.reason = reason or message
        self.state = "unavailable" if unavailable else state


#: How a fault state reads in the progress line and the summary: (what it is, what it stayed).
FAULT_WORDS = {
    "busy": ("database busy", "the database stayed busy"),
    "unavailable": ("database unavailable", "the database stayed unavailable"),
    "full": ("disk full", "the disk stayed full"),
    "failing": ("disk write failing", "the disk kept failing writes"),
}

#: Driver words that mean the disk refused a write for want of space, or for another reason.
FULL_MARKERS = ("disk is full", "no space left", "quota exceeded")
FAILING_MARKERS = ("disk i/o error", "file too large")


def fault_state(message: str) -> str:
    """``full``, ``failing`` or ``busy``: what a driver's words say of a failed write (the server reachable)."""
    lowered = message.lower()
    if any(marker in lowered for marker in FULL_MARKERS):
        return "full"
    return "failing" if any(marker in lowered for marker in FAILING_MARKERS) else "busy"


class DatabaseFileGone(DatabaseUnavailable):
    """The SQLite file being written was deleted or replaced: what is written now would be lost with it."""


class RunNotFound(DatabaseError):
    """No run with the requested id."""


class EpisodeNotFound(DatabaseError):
    """No episode with the requested number in the run."""


class NoRuns(DatabaseError):
    """The database has its schema but no run has been written yet."""


class NotRecorded(DatabaseError):
    """The episode (or the agent in it) was not recorded; the message lists what was."""


class AgentNotFound(DatabaseError):
    """No agent with the requested index in the run."""


class InvalidStoredRow(DatabaseError):
    """A stored row fails the DTO's rules: the database was changed outside townlet."""
