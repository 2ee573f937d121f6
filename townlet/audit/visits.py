"""The visits audit: how often each agent used each affordance, episode by episode, across a run.

Visit counts exist from schema version 2 on; rows written under version 1 hold NULL there and are counted
apart (``AgentVisits.missing``) rather than read as zero visits.
"""

from array import array
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any

from townlet.audit.sparkline import Bars, sparkline
from townlet.telemetry.dto import VISIT_FIELDS

#: The affordances, in the world's order, named as in ``visits_<affordance>``.
AFFORDANCES: tuple[str, ...] = tuple(f.removeprefix("visits_") for f in VISIT_FIELDS)


class AgentVisits:
    """One agent's visit counts per affordance: compact arrays, one entry per episode that has them; or, with
    ``bars`` (a sparkline width and the number of episodes with counts to come), only the totals and the
    sparklines' bars (memory O(affordances x width), whatever the run's length)."""

    def __init__(self, agent_idx: int, bars: tuple[int, int] | None = None) -> None:
        self.agent_idx = agent_idx
        self.episodes = array("q")
        self.visits: dict[str, array] = {name: array("q") for name in AFFORDANCES}
        self.missing = 0  # episodes written before schema version 2: no counts
        self.count = 0
        self._totals = dict.fromkeys(AFFORDANCES, 0)
        self._bars = None if bars is None else {name: Bars(bars[1], bars[0]) for name in AFFORDANCES}

    def add(self, episode: int, counts: Sequence[int | None]) -> None:
        """Fold in one episode's counts, in ``AFFORDANCES`` order (all None for a schema 1 row)."""
        if counts[0] is None:
            self.missing += 1
            return
        self.count += 1
        for name, count in zip(AFFORDANCES, counts, strict=True):
            self._totals[name] += count
            if self._bars is not None:
                self._bars[name].add(count)
            else:
                self.visits[name].append(count)
        if self._bars is None:
            self.episodes.append(episode)

    def total(self, name: str) -> int:
        return self._totals[name]

    def mean(self, name: str) -> float:
        return self.total(name) / self.count if self.count else 0.0

    def sparkline(self, name: str, width: int = 12) -> str:
        if self._bars is not None:
            return self._bars[name].line(from_zero=True)
        return sparkline(self.visits[name], width, from_zero=True)

    def to_dict(self) -> dict[str, Any]:
        if self._bars is not None:
            raise ValueError("this audit kept a summary, not the visits per episode: audit again without bars")
        return {
            "agent_idx": self.agent_idx,
            "episodes": self.episodes.tolist(),
            "visits": {name: counts.tolist() for name, counts in self.visits.items()},
            "total": {name: self.total(name) for name in AFFORDANCES},
        }


def audit_visits(batches: Iterable[list[tuple[Any, ...]]], bars: tuple[int, int] | None = None) -> list[AgentVisits]:
    """Every agent's visits from ``(episode, agent, *VISIT_FIELDS)`` rows (``TelemetryReader.agent_columns``);
    ``bars`` (width, episodes with counts): summaries, not the counts per episode (``AgentVisits``)."""
    agents: dict[int, AgentVisits] = {}
    for episode, agent, *counts in chain.from_iterable(batches):
        audit = agents.get(agent)
        if audit is None:
            audit = agents[agent] = AgentVisits(agent, bars)
        audit.add(episode, counts)
    return [agents[a] for a in sorted(agents)]
