"""The visits audit: how often each agent used each affordance, episode by episode, across a run.

Visit counts exist from schema version 2 on; rows written under version 1 hold NULL there and are counted
apart (``AgentVisits.missing``) rather than read as zero visits.
"""

from array import array
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any

from townlet.audit.sparkline import sparkline
from townlet.telemetry.dto import VISIT_FIELDS

#: The affordances, in the world's order, named as in ``visits_<affordance>``.
AFFORDANCES: tuple[str, ...] = tuple(f.removeprefix("visits_") for f in VISIT_FIELDS)


class AgentVisits:
    """One agent's visit counts per affordance (compact arrays, one entry per episode that has them)."""

    def __init__(self, agent_idx: int) -> None:
        self.agent_idx = agent_idx
        self.episodes = array("q")
        self.visits: dict[str, array] = {name: array("q") for name in AFFORDANCES}
        self.missing = 0  # episodes written before schema version 2: no counts

    def add(self, episode: int, counts: Sequence[int | None]) -> None:
        """Fold in one episode's counts, in ``AFFORDANCES`` order (all None for a schema 1 row)."""
        if counts[0] is None:
            self.missing += 1
            return
        self.episodes.append(episode)
        for name, count in zip(AFFORDANCES, counts, strict=True):
            self.visits[name].append(count)

    def total(self, name: str) -> int:
        return sum(self.visits[name])

    def mean(self, name: str) -> float:
        return self.total(name) / len(self.episodes) if self.episodes else 0.0

    def sparkline(self, name: str, width: int = 12) -> str:
        return sparkline(self.visits[name], width, from_zero=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent_idx": self.agent_idx,
            "episodes": self.episodes.tolist(),
            "visits": {name: counts.tolist() for name, counts in self.visits.items()},
            "total": {name: self.total(name) for name in AFFORDANCES},
        }


def audit_visits(batches: Iterable[list[tuple[Any, ...]]]) -> list[AgentVisits]:
    """Every agent's visits from ``(episode, agent, *VISIT_FIELDS)`` rows (``TelemetryReader.agent_columns``)."""
    agents: dict[int, AgentVisits] = {}
    for episode, agent, *counts in chain.from_iterable(batches):
        audit = agents.get(agent)
        if audit is None:
            audit = agents[agent] = AgentVisits(agent)
        audit.add(episode, counts)
    return [agents[a] for a in sorted(agents)]
