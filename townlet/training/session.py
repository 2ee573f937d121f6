"""``TrainingSession``: one run end to end — its row in the store, the trainer, the live stream, the writer.

Every finished episode's snapshot is checked once, as columns (the single DTO choke point); the live stream
takes its envelope and the database its rows. Every ``checkpoint_every`` episodes, and after the last episode
of the session (finished or stopped by Ctrl-C), the whole learner goes with its episode as a checkpoint, so
``--resume`` continues the same experiment. A run ends ``finished`` when every requested episode ran and was written,
``interrupted`` when Ctrl-C stopped it, ``crashed`` when it failed — and only after the writer flushed every
queued episode it could.
"""

import dataclasses
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import torch
from sqlalchemy import Connection

from townlet.config import TownletConfig, config_from_mapping, with_overrides
from townlet.devices import resolve_device
from townlet.errors import DeviceError, TelemetryError
from townlet.persistence.errors import DatabaseRetryable
from townlet.persistence.location import INT64_MAX
from townlet.persistence.run_labels import checked_name, checked_tags
from townlet.persistence.run_lock import RunLock
from townlet.persistence.store import EpisodeMeta, RunInfo, StoredCheckpoint, TelemetryStore
from townlet.persistence.writer import ATTEMPT_BUSY_MS, BackgroundWriter, ignore, never
from townlet.telemetry.broadcast import Broadcaster
from townlet.telemetry.frames import FramePublisher
from townlet.telemetry.live import WebSocketBroadcaster
from townlet.telemetry.payloads import hello_message
from townlet.telemetry.stream import EpisodePublisher
from townlet.training.checkpoint import CheckpointRefused, capture, require_loadable, restore
from townlet.training.checkpoint_seal import CheckpointDamaged, verify
from townlet.training.checkpoint_seal import describe as describe_checkpoint
from townlet.training.loop import EpisodeReport, Trainer


@dataclass
class SessionResult:
    """What a session did: which run, how it ended, and what the writer and the live stream reported."""

    run: int
    run_uuid: str
    first_episode: int
    planned: int = 0  # episodes this session trains: --episodes, plus any replaced ones a resume trains again
    replaced: int = 0  # of those, episodes past the checkpoint that a resume deleted and trains again
    status: str = "running"
    notices: list[str] = field(default_factory=list)  # one line each, for the user, before training starts
    reports: list[EpisodeReport] = field(default_factory=list)
    checkpoint: tuple[int, int] | None = None  # (episode, bytes) of the session's last learner checkpoint
    written: int = 0  # episodes this session committed
    unwritten: list[int] = field(default_factory=list)  # trained, and certainly not committed
    in_flight: int | None = None  # trained, its write still running when the writer gave up: maybe committed
    checkpoint_stored: bool = False  # the session's last checkpoint committed with its episode
    database_state: str = "busy"  # what the last fault said: a FAULT_WORDS key (busy, unavailable, full, failing)
    status_saved: bool = True
    writer_blocked_s: float = 0.0
    live_published: int = 0
    live_clients: int = 0
    live_dropped: int = 0
    live_frames: int = 0  # live grid frames published (only while a client watched the grid)
    live_frames_dropped: int = 0


@dataclass(frozen=True, slots=True)
class LearnerChoice:
    """How ``--resume`` picks its learner: the newest checkpoint (default), the checkpoint after a chosen
    episode (``--from-checkpoint``), or a fresh learner after the last stored episode (``--fresh-learner``)."""

    from_checkpoint: int | None = None
    fresh: bool = False


class ResumeConflict(TelemetryError):
    """``--resume`` was given a setting that differs from the one the run was trained with."""


class TrainingSession:
    """Owns the store, the trainer, the optional live broadcaster and the background writer of one run.

    Everything that can be refused is checked before the database is created or written: the device, the
    config, the trainer's memory, the live address, the run to resume (it must exist, nobody else may be
    training it, and flags may not contradict what it was trained with). A refused session leaves no run.
    """

    def __init__(
        self,
        config: TownletConfig,
        *,
        db: str,
        live: tuple[str, int] | None = None,
        resume: int | None = None,
        learner: LearnerChoice | None = None,
        on_live_start: Callable[[str], None] = lambda url: None,
        sinks: Sequence[Broadcaster] = (),
        explicit: Collection[str] = (),
        name: str | None = None,
        tags: Sequence[str] = (),
    ) -> None:
        self.broadcaster: WebSocketBroadcaster | None = None
        self.lock: RunLock | None = None
        self.store: TelemetryStore | None = None
        try:
            name = None if name is None else checked_name(name)
            tags = checked_tags(tags)
            if resume is None:
                self._start_new(config, db, live, name, tags)
            else:
                self._resume(config, db, live, resume, explicit, learner or LearnerChoice())
                if name is not None:
                    self.store.rename_run(resume, name)
                self.store.label_run(resume, add=tags)
            self.publisher = EpisodePublisher(self.result.run_uuid, [*sinks, *filter(None, [self.broadcaster])])
            self.writer = BackgroundWriter(
                self.store,
                self.result.run,
                max_queued=self.config.training.write_queue,
                keep_checkpoints=self.config.training.checkpoints_kept,
                before_write=self._relock,
                guard=self._require_lock,
            )
        except BaseException:
            self._release()
            raise
        if self.broadcaster is not None:
            self.trainer.frames = FramePublisher(
                self.broadcaster, self.result.run_uuid, self.trainer.recorded_agents, self.config.environment.grid_size,
                self.config.recording.live_fps,
            )  # fmt: skip
            hello = hello_message(self.result.run_uuid, self.config.training.agents, self.result.run)
            self.broadcaster.set_hello(hello)
            on_live_start(self.broadcaster.url)

    def _start_new(
        self, config: TownletConfig, db: str, live: tuple[str, int] | None, name: str | None, tags: Sequence[str]
    ) -> None:
        device = resolve_device(config.training.device)
        self.config = config
        self.trainer = _build_trainer(config, device, stage=1, first=1)
        self.broadcaster = _bind(live)
        self.store = TelemetryStore.open(db, write=True)
        notices = _stale_notices(self.store.mark_stale_runs())
        run_uuid = uuid.uuid4().hex
        run = self.store.create_run(
            run_uuid=run_uuid,
            seed=config.training.seed,
            device=str(device),
            num_agents=config.training.agents,
            config=config.to_dict(),
            before_commit=self._lock_run,  # held before any other process can see the run
            name=name,
            tags=tags,
        )
        self.result = SessionResult(
            run=run, run_uuid=run_uuid, first_episode=1, notices=notices, planned=config.training.episodes
        )

    def _relock(self) -> None:
        if self.lock is not None:
            self.lock.ensure()

    def _require_lock(self, connection: Connection) -> None:
        if self.lock is not None:
            self.lock.require_held(connection)

    def _lock_run(self, run: int) -> None:
        assert self.store is not None
        self.lock = RunLock(self.store.url, run, self.store.label).acquire()

    def _resume(
        self,
        config: TownletConfig,
        db: str,
        live: tuple[str, int] | None,
        resume: int,
        explicit: Collection[str],
        learner: LearnerChoice,
    ) -> None:
        device = resolve_device(config.training.device)
        # Every refusal comes before the first write or journal-mode switch: a refused resume leaves the file as is.
        self.store = TelemetryStore.open(db, write=True, must_exist=True, wal=False)
        info = self.store.get_run(resume)
        stored = config_from_mapping(info.config, where=f"run {resume}'s stored config")
        _refuse_conflicts(resume, stored, config, explicit)
        self.config = with_overrides(
            stored, "training", **{key: getattr(config.training, key) for key in RESUME_MAY_CHANGE}
        )
        # Recording settings are not learning settings: the stored ones, with what this session names on top.
        recording = {name.removeprefix("recording."): getattr(config.recording, name.removeprefix("recording."))
                     for name in explicit if name.startswith("recording.")}  # fmt: skip
        self.config = dataclasses.replace(self.config, recording=dataclasses.replace(stored.recording, **recording))
        self._lock_run(info.id)
        notices: list[str] = []
        last = self.store.last_episode(info.id)
        # --fresh-learner: as if the run had none (its checkpoints stay; newer ones shadow them from now on).
        checkpoint = None if learner.fresh else self.store.checkpoint(info.id, learner.from_checkpoint)
        if learner.from_checkpoint is not None and checkpoint is None:
            raise CheckpointRefused(
                f"run {info.id} has no checkpoint after episode {learner.from_checkpoint}: "
                f"{_checkpoint_list(self.store, info.id)}"
            )
        replace_after: int | None = None
        if checkpoint is None:
            first, stage = (1, 1) if last is None else (last[0] + 1, last[1])
            self.trainer = _build_trainer(self.config, device, stage=stage, first=first)
            if last is not None:
                why = "--fresh-learner" if learner.fresh else _why_no_checkpoint(info, last[0])
                notices.append(
                    f"run {info.id} has no learner checkpoint ({why}): learning "
                    f"restarts from scratch at episode {first} (new networks, epsilon "
                    f"{self.config.population.epsilon_start:g}, empty replay buffer)"
                )
        else:
            require_loadable(checkpoint, info.id, device, device_given="training.device" in explicit)
            first = checkpoint.episode + 1
            self.trainer = _build_trainer(self.config, device, stage=1, first=first)
            try:
                restore(self.trainer, checkpoint)
            except CheckpointDamaged as exc:
                raise _damaged(self.store, info.id, checkpoint, str(exc), last) from None
            if last is not None and last[0] > checkpoint.episode:
                replace_after = checkpoint.episode
                died = "" if learner.from_checkpoint else " (its process died before the next one)"
                notices.append(
                    f"run {info.id} has episodes up to {last[0]} but resumes from the checkpoint after episode "
                    f"{checkpoint.episode}{died}: episodes {first}-{last[0]} are deleted and trained again from that "
                    f"checkpoint, then {self.config.training.episodes} more"
                )
            population = self.trainer.population
            notices.append(
                f"learner restored from the checkpoint after episode {checkpoint.episode}: epsilon "
                f"{population.epsilon:g}, {population.replay.size} transitions in replay, "
                f"stage {self.trainer.curriculum.stage}"
            )
        self.broadcaster = _bind(live)
        self.store.use_wal()
        notices[:0] = _stale_notices(self.store.mark_stale_runs())
        self.store.resume_run(info.id, after=replace_after)  # the last step: everything refusable was checked
        before = self.store.last_episode(info.id)  # the episode this session follows: is the next one a new stage?
        self.trainer.recording_plan.previous_stage = None if before is None else before[1]
        # Resume never shrinks a run: replaced episodes are trained again in full, and --episodes counts after them.
        replaced = 0 if replace_after is None or last is None else last[0] - replace_after
        self.result = SessionResult(
            run=info.id,
            run_uuid=info.run_uuid,
            first_episode=first,
            notices=notices,
            planned=self.config.training.episodes + replaced,
            replaced=replaced,
        )

    def run(
        self,
        stop: Callable[[], bool] = never,
        on_episode: Callable[[EpisodeReport], None] = lambda r: None,
        on_wait: Callable[[str], None] = ignore,
    ) -> SessionResult:
        """Train ``config.training.episodes`` episodes (or until ``stop()``), then flush and close everything.

        ``on_wait`` hears what training waits for while the database is busy ("database busy, N episodes
        queued ..."). After ``stop()`` a busy database gets a moment to recover, then what it has not taken
        is listed in ``result.unwritten``.
        """
        result = self.result
        outcome = "crashed"
        try:
            t = self.config.training
            last = result.first_episode + result.planned - 1
            self.trainer.recording_plan.last_planned = last
            for report in self.trainer.run(result.planned, first_episode=result.first_episode):
                result.reports.append(report)
                stopping = stop()  # asked once per episode, after it: this one is then the session's last
                checkpoint = None
                if stopping or report.episode == last or _due(report.episode, t.checkpoint_every):
                    checkpoint = capture(self.trainer, report.episode)
                    result.checkpoint = (report.episode, len(checkpoint.blob))
                agents = self.publisher.publish_episode(report.episode, report.snapshot)
                queued = self.writer.submit(
                    episode_meta(report), agents, checkpoint=checkpoint, stop=stop, on_wait=on_wait
                )
                on_episode(report)
                if not queued or stopping:
                    break
            outcome = "finished" if len(result.reports) == result.planned else "interrupted"
        except KeyboardInterrupt:  # a second Ctrl-C in the middle of an episode
            outcome = "interrupted"
            raise
        finally:
            self._close(result, outcome, stop, on_wait)
        return result

    def _close(
        self, result: SessionResult, outcome: str, stop: Callable[[], bool], on_wait: Callable[[str], None]
    ) -> None:
        try:
            self.writer.close(stop=stop, on_wait=on_wait)  # flush before the run's status says anything
        except Exception:
            outcome = "crashed"  # a write failed for good
            raise
        finally:
            # Counted from what committed, never from what was queued: an episode trained but not committed is
            # unwritten, unless its write attempt was still running when the writer gave up (then it is unknown).
            committed = set(self.writer.committed)
            result.written = len(committed)
            result.in_flight = self.writer.in_flight()
            trained = {report.episode for report in result.reports}
            result.unwritten = sorted(trained - committed - {result.in_flight})
            result.checkpoint_stored = result.checkpoint is not None and result.checkpoint[0] in committed
            result.database_state = self.writer.fault_state
            result.writer_blocked_s = self.writer.blocked_s
            self.publisher.close()
            if self.broadcaster is not None:
                result.live_published = self.broadcaster.published
                result.live_clients = self.broadcaster.clients_served
                result.live_dropped = self.broadcaster.dropped
                result.live_frames = self.broadcaster.frames_published
                result.live_frames_dropped = self.broadcaster.frames_dropped
                self.broadcaster = None
            # Episodes given up on (Ctrl-C while the database was busy) leave the run interrupted, not finished.
            result.status = "interrupted" if outcome == "finished" and result.unwritten else outcome
            try:
                result.status_saved = self._save_status(result)
            finally:
                self._release()

    def _save_status(self, result: SessionResult) -> bool:
        """Set the run's status; a database still busy or unreachable after a couple of seconds leaves it
        ``running`` (readers then list it ``stale`` once this process is gone)."""
        assert self.store is not None
        deadline = time.monotonic() + STATUS_PATIENCE_S
        while True:
            try:
                self.store.set_run_status(result.run, result.status, busy_timeout_ms=ATTEMPT_BUSY_MS)
                return True
            except DatabaseRetryable:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.1)

    def _release(self) -> None:
        if self.broadcaster is not None:
            self.broadcaster.close()
            self.broadcaster = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        if self.store is not None:
            self.store.close()


#: The ``[training]`` settings a resumed run takes from this session; every other setting is the run's own.
RESUME_MAY_CHANGE = ("episodes", "device", "threads", "write_queue", "checkpoint_every", "checkpoints_kept")

#: After the writer gave up on a busy database, how long the session keeps trying to set the run's status.
STATUS_PATIENCE_S = 2.0


def _due(episode: int, every: int) -> bool:
    """Whether ``checkpoint_every`` asks for a checkpoint after this episode (0: only at a session's end)."""
    return every > 0 and episode % every == 0


#: The first townlet version that stores learner checkpoints.
CHECKPOINTS_SINCE = (0, 4)


def _why_no_checkpoint(info: RunInfo, last: int) -> str:
    try:
        version = tuple(int(part) for part in info.code_version.split(".")[:2])
    except ValueError:
        version = CHECKPOINTS_SINCE
    if version < CHECKPOINTS_SINCE:
        return f"it was trained by townlet {info.code_version}, before checkpoints"
    every = int(info.config.get("training", {}).get("checkpoint_every", 0) or 0)
    if info.status == "finished" or (every > 0 and last >= every):  # a checkpoint was stored, and is gone
        return "its checkpoints were dropped: `db downgrade` below revision 0003 drops them"
    return "its process died before the first one was stored"


def _checkpoint_list(store: TelemetryStore, run: int) -> str:
    episodes = list(store.checkpoint_sizes(run))
    if not episodes:
        return "it has none (resume with --fresh-learner)"
    return "its checkpoints are after episode " + ", ".join(map(str, episodes))


def _damaged(
    store: TelemetryStore, run: int, checkpoint: StoredCheckpoint, reason: str, last: tuple[int, int] | None
) -> CheckpointDamaged:
    """The one-line refusal of a damaged checkpoint, naming both ways out; nothing has been changed."""
    newest = last[0] if last is not None else checkpoint.episode
    intact = None
    for episode in sorted((e for e in store.checkpoint_sizes(run) if e < checkpoint.episode), reverse=True):
        older = store.checkpoint(run, episode)
        try:
            if older is not None:  # None: pruned meanwhile
                verify(older)
                intact = episode
                break
        except CheckpointDamaged:
            continue
    ways = []
    if intact is not None:
        ways.append(
            f"resume from the intact checkpoint after episode {intact} with `--resume {run} --from-checkpoint "
            f"{intact}` (episodes {intact + 1}-{newest} are trained again)"
        )
    ways.append(f"keep episodes up to {newest} and restart learning with `--resume {run} --fresh-learner`")
    return CheckpointDamaged(
        f"{describe_checkpoint(checkpoint, run)} is damaged ({reason}) and was not loaded; nothing was changed: "
        + ", or ".join(ways)
    )


def _stale_notices(runs: list[int]) -> list[str]:
    return [f"run {run} was left running by a process that died without saying so: marked stale" for run in runs]


def _build_trainer(config: TownletConfig, device: torch.device, *, stage: int, first: int) -> Trainer:
    """The trainer, or a one-line error when its tensors do not fit in memory (``--agents`` too large)."""
    # Seeded seed + (first episode - 1): a resumed run whose random streams a checkpoint cannot restore (none,
    # or another device type) continues on a fresh stream instead of replaying episode 1's.
    seeded = with_overrides(config, "training", seed=(config.training.seed + first - 1) % (INT64_MAX + 1))
    try:
        return Trainer(seeded, device, stage=stage)
    except (MemoryError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and "memory" not in str(exc).lower() and "alloc" not in str(exc).lower():
            raise
        raise DeviceError(
            f"cannot allocate {config.training.agents} agents on {device} ({str(exc).splitlines()[0]}): "
            "use fewer --agents"
        ) from None


def _bind(live: tuple[str, int] | None) -> WebSocketBroadcaster | None:
    """Bind the live stream's address before anything is written (a refused address leaves no run)."""
    if live is None:
        return None
    host, port = live
    return WebSocketBroadcaster(host, port, hello_later=True).start()


def _refuse_conflicts(run: int, stored: TownletConfig, given: TownletConfig, explicit: Collection[str]) -> None:
    """A resumed run keeps its stored settings; a flag or --config that contradicts them is refused."""
    for name in sorted(explicit):
        if name.removeprefix("training.") in RESUME_MAY_CHANGE or name.startswith("recording."):
            continue
        section, key = name.split(".")
        stored_value = getattr(getattr(stored, section), key)
        given_value = getattr(getattr(given, section), key)
        if stored_value != given_value:
            raise ResumeConflict(
                f"run {run} was trained with {name} = {stored_value!r}, not {given_value!r}: --resume keeps the "
                "run's stored settings, so drop that flag or --config key, or start a new run"
            )


def episode_meta(report: EpisodeReport) -> EpisodeMeta:
    finished = datetime.now(UTC)
    return EpisodeMeta(
        episode=report.episode,
        steps=report.steps,
        curriculum_stage=report.stage,
        duration_s=report.duration_s,
        started_at=finished - timedelta(seconds=report.duration_s),
        finished_at=finished,
        recording=report.recording,
    )
