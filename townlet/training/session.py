"""``TrainingSession``: one run end to end — its row in the store, the trainer, the live stream, the writer.

Every finished episode becomes one envelope (the single DTO choke point); the live stream and the database
both take that envelope. A run ends ``finished`` when every requested episode ran, ``crashed`` when it was
stopped (Ctrl-C) or failed — and only after the writer flushed every queued episode.
"""

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from townlet.config import TownletConfig, config_from_mapping, with_overrides
from townlet.devices import resolve_device
from townlet.persistence.store import EpisodeMeta, TelemetryStore
from townlet.persistence.writer import BackgroundWriter
from townlet.telemetry.broadcast import Broadcaster
from townlet.telemetry.live import WebSocketBroadcaster
from townlet.telemetry.payloads import hello_message
from townlet.telemetry.stream import EpisodePublisher
from townlet.training.loop import EpisodeReport, Trainer


@dataclass
class SessionResult:
    """What a session did: which run, how it ended, and what the writer and the live stream reported."""

    run: int
    run_uuid: str
    first_episode: int
    status: str = "running"
    reports: list[EpisodeReport] = field(default_factory=list)
    written: int = 0
    writer_blocked_s: float = 0.0
    live_published: int = 0
    live_clients: int = 0
    live_dropped: int = 0


class TrainingSession:
    """Owns the store, the trainer, the optional live broadcaster and the background writer of one run."""

    def __init__(
        self,
        config: TownletConfig,
        *,
        db: str,
        live: tuple[str, int] | None = None,
        resume: int | None = None,
        on_live_start: Callable[[str], None] = lambda url: None,
        sinks: Sequence[Broadcaster] = (),
    ) -> None:
        self.store = TelemetryStore.open(db, write=True)
        try:
            self._setup(config, live, resume, on_live_start, sinks)
        except BaseException:
            self.store.close()
            raise

    def _setup(
        self,
        config: TownletConfig,
        live: tuple[str, int] | None,
        resume: int | None,
        on_live_start: Callable[[str], None],
        sinks: Sequence[Broadcaster],
    ) -> None:
        stage, first = 1, 1
        if resume is None:
            run_uuid = uuid.uuid4().hex
            device = resolve_device(config.training.device)
            run = self.store.create_run(
                run_uuid=run_uuid,
                seed=config.training.seed,
                device=str(device),
                num_agents=config.training.agents,
                config=config.to_dict(),
            )
        else:
            info = self.store.get_run(resume)
            stored = config_from_mapping(info.config, where=f"run {resume}'s stored config")
            config = with_overrides(
                stored, "training", episodes=config.training.episodes, device=config.training.device
            )
            device = resolve_device(config.training.device)
            run, run_uuid = info.id, info.run_uuid
            last = self.store.last_episode(run)
            if last is not None:
                first, stage = last[0] + 1, last[1]
            self.store.set_run_status(run, "running")
        self.config = config
        # A resumed run continues with a fresh seed stream: seed + (first episode - 1).
        seeded = with_overrides(config, "training", seed=config.training.seed + first - 1)
        self.trainer = Trainer(seeded, device, stage=stage)
        self.result = SessionResult(run=run, run_uuid=run_uuid, first_episode=first)
        self.broadcaster = None
        if live is not None:
            host, port = live
            hello = hello_message(run_uuid, config.training.agents)
            self.broadcaster = WebSocketBroadcaster(host, port, hello=hello).start()
            on_live_start(self.broadcaster.url)
        self.publisher = EpisodePublisher(run_uuid, [*sinks, *([self.broadcaster] if self.broadcaster else [])])
        self.writer = BackgroundWriter(self.store, run)

    def run(
        self, stop: Callable[[], bool] = lambda: False, on_episode: Callable[[EpisodeReport], None] = lambda r: None
    ) -> SessionResult:
        """Train ``config.training.episodes`` episodes (or until ``stop()``), then flush and close everything."""
        result = self.result
        completed = False
        try:
            episodes = self.config.training.episodes
            for report in self.trainer.run(episodes, first_episode=result.first_episode, stop=stop):
                envelope = self.publisher.publish_episode(report.episode, report.snapshot)
                self.writer.submit(episode_meta(report), envelope["agents"])
                result.reports.append(report)
                on_episode(report)
            completed = len(result.reports) == episodes
        finally:
            self._close(result, completed)
        return result

    def _close(self, result: SessionResult, completed: bool) -> None:
        try:
            self.writer.close()  # flush before the run's status says anything
        finally:
            result.written = self.writer.written
            result.writer_blocked_s = self.writer.blocked_s
            self.publisher.close()
            if self.broadcaster is not None:
                result.live_published = self.broadcaster.published
                result.live_clients = self.broadcaster.clients_served
                result.live_dropped = self.broadcaster.dropped
            result.status = "finished" if completed else "crashed"
            try:
                self.store.set_run_status(result.run, result.status)
            finally:
                self.store.close()


def episode_meta(report: EpisodeReport) -> EpisodeMeta:
    finished = datetime.now(UTC)
    return EpisodeMeta(
        episode=report.episode,
        steps=report.steps,
        curriculum_stage=report.stage,
        duration_s=report.duration_s,
        started_at=finished - timedelta(seconds=report.duration_s),
        finished_at=finished,
    )
