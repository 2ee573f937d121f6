"""Registry snapshots: the registry's state as Python values (torch-free, so readers never import torch)."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ColumnFacts:
    """What the registry knows of one snapshot column from the tensor it came out of: the Python type
    ``.tolist()`` gave every value, the smallest and largest value (NaN when any value is NaN), and the sum of
    the values and of their squares, each added one by one in agent order in double precision (what a
    database's ``sum()`` over the stored column gives; ``None`` when not measured).

    The DTO rules accept a column whose facts already prove every value good, instead of walking its values;
    the store writes an episode's rollup from them instead of folding the values again.
    """

    kind: type
    low: Any
    high: Any
    total: float | None = None
    total_of_squares: float | None = None


#: A field's facts: one ``ColumnFacts``, or a tuple of them for a 2-d field (one per column).
Facts = ColumnFacts | tuple[ColumnFacts, ...]


@dataclass(frozen=True, slots=True)
class AgentRuntimeSnapshot:
    """One agent's runtime state as Python scalars only (``json.dumps(asdict(s))`` always works)."""

    agent_idx: int
    baseline_survival_steps: float
    survival_steps: int
    curriculum_stage: int
    epsilon: float
    episode_reward: float
    death_cause: str
    meters: dict[str, float]
    affordance_visits: dict[str, int]
    action_entropy: float


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    """All agents' runtime state, one tuple per field (column order: agent index).

    The 2-d fields are column-major too: ``meter_columns[m][i]`` is meter ``meter_names[m]`` of agent ``i``,
    ``visit_columns[a][i]`` agent ``i``'s visits to ``affordance_names[a]`` (one column per name, which is the
    shape the payload builder and the store consume, and a cheaper ``.tolist()`` than one list per agent).

    ``facts`` (by field name) are set only by the registry, from the tensors the columns came out of (a 2-d
    field's facts are a tuple, one per column); the columns are tuples, so they cannot go stale. A snapshot
    made any other way, or by ``dataclasses.replace``, has none: the DTO walks every value and the store
    folds the rollup.
    """

    baseline_survival_steps: Sequence[float]
    survival_steps: Sequence[int]
    curriculum_stage: Sequence[int]
    epsilon: Sequence[float]
    episode_reward: Sequence[float]
    death_cause: Sequence[str]
    meter_columns: Sequence[Sequence[float]]
    meter_names: tuple[str, ...]
    visit_columns: Sequence[Sequence[int]]
    affordance_names: tuple[str, ...]
    action_entropy: Sequence[float]
    facts: Mapping[str, "Facts"] = field(default_factory=dict, init=False, compare=False, repr=False)

    @classmethod
    def from_registry(cls, facts: Mapping[str, "Facts"], **columns: Any) -> "RegistrySnapshot":
        """A snapshot with the facts its producer (the registry) measured on the tensors."""
        snapshot = cls(**columns)
        object.__setattr__(snapshot, "facts", dict(facts))  # frozen: facts are set once, here
        return snapshot

    @property
    def num_agents(self) -> int:
        return len(self.survival_steps)

    def agent(self, agent_idx: int) -> AgentRuntimeSnapshot:
        """The per-agent view of one column entry."""
        return AgentRuntimeSnapshot(
            agent_idx=agent_idx,
            baseline_survival_steps=self.baseline_survival_steps[agent_idx],
            survival_steps=self.survival_steps[agent_idx],
            curriculum_stage=self.curriculum_stage[agent_idx],
            epsilon=self.epsilon[agent_idx],
            episode_reward=self.episode_reward[agent_idx],
            death_cause=self.death_cause[agent_idx],
            meters={name: column[agent_idx] for name, column in zip(self.meter_names, self.meter_columns, strict=True)},
            affordance_visits={
                name: column[agent_idx] for name, column in zip(self.affordance_names, self.visit_columns, strict=True)
            },
            action_entropy=self.action_entropy[agent_idx],
        )

    def agents(self) -> list[AgentRuntimeSnapshot]:
        return [self.agent(i) for i in range(self.num_agents)]
