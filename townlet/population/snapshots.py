"""Registry snapshots: the registry's state as Python values (torch-free, so readers never import torch)."""

from dataclasses import dataclass


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
    """All agents' runtime state, one Python list per field (column order: agent index).

    The 2-d fields are column-major too: ``meter_columns[m][i]`` is meter ``meter_names[m]`` of agent ``i``,
    ``visit_columns[a][i]`` agent ``i``'s visits to ``affordance_names[a]`` (one list per name, which is the
    shape the payload builder and the store consume, and a cheaper ``.tolist()`` than one list per agent).
    """

    baseline_survival_steps: list[float]
    survival_steps: list[int]
    curriculum_stage: list[int]
    epsilon: list[float]
    episode_reward: list[float]
    death_cause: list[str]
    meter_columns: list[list[float]]
    meter_names: tuple[str, ...]
    visit_columns: list[list[int]]
    affordance_names: tuple[str, ...]
    action_entropy: list[float]

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
