"""``RecordingPlan`` (which episodes and agents are recorded) and ``StepRecorder`` (their steps, on device).

A recorded episode costs one small ``torch.cat`` per step on the agents' device and one bulk device->host
copy when it ends; an episode that is not recorded costs nothing.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from townlet.config import RecordingConfig
from townlet.environment.grid import StepResult, VectorizedGridEnv


def recorded_agents(config: RecordingConfig, num_agents: int) -> list[int]:
    """The chosen agents, or every agent up to ``max_agents``, spread evenly over the population."""
    if config.agents:
        return sorted(config.agents)
    if num_agents <= config.max_agents:
        return list(range(num_agents))
    return [i * num_agents // config.max_agents for i in range(config.max_agents)]


@dataclass
class RecordingPlan:
    """Decides, before an episode starts, whether it is recorded and why (``recording.REASONS``).

    ``last_planned`` is the session's last planned episode; ``previous_stage`` the stage of the episode
    before the next one (None before episode 1), so the first episode at each stage is recorded.
    """

    config: RecordingConfig
    last_planned: int = 0
    previous_stage: int | None = None
    extra: frozenset[int] = field(default_factory=frozenset)

    def reasons(self, episode: int, stage: int) -> tuple[str, ...]:
        c = self.config
        if not c.enabled:
            return ()
        why = []
        if c.every and episode % c.every == 0:
            why.append("every")
        if c.stage_starts and stage != self.previous_stage:
            why.append("stage")
        if c.session_last and episode == self.last_planned:
            why.append("session_last")
        if episode in c.episodes or episode in self.extra:
            why.append("asked")
        return tuple(why)


class StepRecorder:
    """Owns one episode's frames of the recorded agents: one float32 row per agent and step, on the device.

    Row 0 is the start state; each ``step`` keeps the state after it (``recording.FRAME_COLUMNS``).
    ``finish`` stacks them and copies the whole episode to the CPU at once.
    """

    def __init__(self, env: VectorizedGridEnv, agents: Sequence[int], q_values: bool) -> None:
        self.env = env
        self.agents = list(agents)
        self.q_values = q_values
        every = self.agents == list(range(env.num_agents))
        self._index = None if every else torch.tensor(self.agents, dtype=torch.long, device=env.device)
        self._start = torch.empty(0)
        self._steps: list[tuple[torch.Tensor, ...]] = []

    def start(self) -> None:
        env = self.env
        n = env.num_agents
        minus = torch.full((n, 1), -1.0, device=env.device)
        zero = torch.zeros((n, 1), device=env.device)
        q = [torch.zeros((n, env.num_actions), device=env.device)] if self.q_values else []
        # row, col, action, explored, affordance, cause, acting | reward, meters | q
        parts = [env.positions.to(torch.float32), minus, zero, minus, minus, zero, zero, env.meters, *q]
        self._start = torch.cat(parts, dim=1)
        self._steps: list[tuple[torch.Tensor, ...]] = []

    def step(
        self,
        actions: torch.Tensor,
        explored: torch.Tensor,
        q: torch.Tensor | None,
        step: StepResult,
        rewards: torch.Tensor,
    ) -> None:
        """Keep references to this step's tensors (the env and the learner make new ones every step): no kernel
        runs here; ``finish`` stacks them."""
        env = self.env
        kept = (env.positions, actions, explored, step.affordance_used, step.death_cause, step.alive_before, rewards,
                env.meters)  # fmt: skip
        self._steps.append((*kept, q) if self.q_values else kept)

    def finish(self) -> torch.Tensor:
        """The episode's frames ``(steps + 1, agents, columns)`` on the CPU: the one device->host copy."""
        pick = (lambda t: t) if self._index is None else (lambda t: t.index_select(1, self._index))
        start = pick(self._start.unsqueeze(0))
        fields = list(zip(*self._steps, strict=True))
        self._steps = []
        if not fields:
            return start.cpu()
        # Each field stacked over the steps, and only then narrowed to the recorded agents and joined.
        small = [pick(torch.stack(f)).to(torch.float32).unsqueeze(2) for f in fields[1:7]]
        wide = [pick(torch.stack(fields[0])).to(torch.float32), *small, pick(torch.stack(fields[7]))]
        if self.q_values:
            wide.append(pick(torch.stack(fields[8])).to(torch.float32))
        return torch.cat([start, torch.cat(wide, dim=2)], dim=0).cpu()
