"""What ``train`` says while it trains, on stderr: a progress bar on a terminal, plain lines in a log.

Both count the run's episodes (``episode 50/60``: the run's episode 50, of 60 once this session ends), say a
stage change as it happens, and say database waits as they happen. A stage change after the session's last
episode is kept for the summary: this session never trains at the new stage.
"""

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from townlet.curriculum.stages import StageChange
    from townlet.training.loop import EpisodeReport

#: In a log, a wait that goes on is repeated at most this often (it is said at once when it starts or changes).
WAIT_REPEAT_S = 10.0
#: ``--log-every 0`` (the default) logs about this many lines per session: every episode up to 100 episodes.
AUTO_LINES = 100


def log_interval(log_every: int, planned: int) -> int:
    """Episodes between two log lines: ``log_every``, or for 0 one line per ``planned // AUTO_LINES`` episodes."""
    return log_every if log_every > 0 else max(1, planned // AUTO_LINES)


def stage_line(change: "StageChange", episode: int) -> str:
    """A stage change, named by its first episode, as ``audit baselines`` names it."""
    return (
        f"stage {change.from_stage} → {change.to_stage} from episode {episode + 1} "
        f"({change.reason}, up to episode {episode})"
    )


class TrainProgress:
    """Owns what ``train`` shows per episode and per wait: a rich bar on a terminal, else one line every
    ``every`` episodes (always the session's first and last), and the stage change the summary must name."""

    def __init__(self, console: "Console", *, first: int, planned: int, every: int) -> None:
        self.console, self.first, self.every = console, first, every
        self.last = first + planned - 1
        self.pending_change: str | None = None
        self._said_wait = ("", 0.0)
        self._database = ""
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._started = time.monotonic()

    def __enter__(self) -> "TrainProgress":
        if self.console.is_terminal:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            columns = (
                TextColumn("[bold]episode[/] {task.fields[episode]}/{task.fields[last]}"),
                BarColumn(),
                TextColumn("survival {task.fields[survival]:>6.1f}"),
                TextColumn("baseline {task.fields[baseline]:>6.1f}"),
                TextColumn("ε {task.fields[epsilon]:.3f}"),
                TextColumn("stage {task.fields[stage]}"),
                TimeElapsedColumn(),
                TextColumn("[yellow]{task.fields[database]}"),
            )
            self._progress = Progress(*columns, console=self.console)
            self._progress.start()
            self._task = self._progress.add_task(
                "train",
                total=self.last - self.first + 1,
                episode=self.first - 1,
                last=self.last,
                survival=0.0,
                baseline=0.0,
                epsilon=1.0,
                stage=1,
                database="",
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def say(self, text: str, style: str | None = None) -> None:
        (self._progress.console if self._progress is not None else self.console).print(
            text, style=style, markup=False, highlight=False
        )

    def episode(self, report: "EpisodeReport", database: str, *, session_ends: bool) -> None:
        """One finished episode; ``session_ends`` when it is the session's last (planned, or a stop asked)."""
        if report.stage_change is not None:
            line = stage_line(report.stage_change, report.episode)
            if session_ends or report.episode >= self.last:
                self.pending_change = line
            else:
                self.say(line)
        self._database_changed(database)
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task,
                advance=1,
                episode=report.episode,
                survival=report.mean_survival,
                baseline=report.mean_baseline,
                epsilon=report.epsilon,
                stage=report.stage,
                database=database,
            )
            return
        done = report.episode - self.first + 1
        if done == 1 or done % self.every == 0 or session_ends or report.episode >= self.last:
            elapsed = time.monotonic() - self._started
            waits = f" {database}" if database else ""
            self.say(
                f"episode {report.episode}/{self.last} survival {report.mean_survival:.1f} "
                f"baseline {report.mean_baseline:.1f} epsilon {report.epsilon:.3f} stage {report.stage} "
                f"{_clock(elapsed)}{waits}"
            )

    def wait(self, status: str) -> None:
        """Training waits for the database: on the bar's line, and said in a line when it starts or changes
        (in a log, repeated every ``WAIT_REPEAT_S`` while it lasts)."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, database=status)
        reason = status.split(", ", 1)[0]
        said, when = self._said_wait
        now = time.monotonic()
        repeat = self._progress is None and now - when >= WAIT_REPEAT_S
        if reason != said or repeat:
            self._said_wait = (reason, now)
            self.say(f"training waits: {status}", style="yellow")

    def _database_changed(self, database: str) -> None:
        """The writer started or stopped retrying while training went on: said once each way, in a log."""
        if self._progress is not None or database.split(", ", 1)[0] == self._database.split(", ", 1)[0]:
            self._database = database
            return
        if database:
            self.say(f"database: {database} (training goes on)", style="yellow")
        else:
            self.say("database: writes again")
        self._database = database


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
