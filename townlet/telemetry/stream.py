"""``EpisodePublisher``: turns each finished episode into its envelope, once, and hands it to every sink."""

from collections.abc import Sequence
from typing import Any

from townlet.population.snapshots import RegistrySnapshot
from townlet.telemetry.broadcast import Broadcaster
from townlet.telemetry.payloads import episode_envelope


class EpisodePublisher:
    """Owns the run id and the sinks (live broadcasters) that receive every episode's envelope."""

    def __init__(self, run_id: str, sinks: Sequence[Broadcaster] = ()) -> None:
        self.run_id = run_id
        self.sinks = list(sinks)
        self.published = 0

    def publish_episode(self, episode: int, snapshot: RegistrySnapshot) -> dict[str, Any]:
        envelope = episode_envelope(self.run_id, episode, snapshot)
        for sink in self.sinks:
            sink.publish(envelope)
        self.published += 1
        return envelope

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
