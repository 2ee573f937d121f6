"""``EpisodePublisher``: turns each finished episode into its checked columns, once, and its envelope for
every sink."""

from collections.abc import Sequence

from townlet.population.snapshots import RegistrySnapshot
from townlet.telemetry.broadcast import Broadcaster
from townlet.telemetry.dto import AgentColumns
from townlet.telemetry.payloads import build_agent_columns, episode_envelope


class EpisodePublisher:
    """Owns the run id and the sinks (live broadcasters) that receive every episode's envelope."""

    def __init__(self, run_id: str, sinks: Sequence[Broadcaster] = ()) -> None:
        self.run_id = run_id
        self.sinks = list(sinks)
        self.published = 0

    def publish_episode(self, episode: int, snapshot: RegistrySnapshot) -> AgentColumns:
        """Check the episode's columns (the one choke point), send its envelope to every sink, and return the
        columns for the store. Without a sink no envelope is built: the store needs no per-agent dicts."""
        agents = build_agent_columns(snapshot, episode)
        if self.sinks:
            envelope = episode_envelope(self.run_id, episode, agents)
            for sink in self.sinks:
                sink.publish(envelope)
        self.published += 1
        return agents

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
