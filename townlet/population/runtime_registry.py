"""``AgentRuntimeRegistry``: every agent's runtime state as tensors on the agents' device.

The registry is the one owner of the reward baseline (plan phase 1). It hands out tensors to the
training step (``get_baseline_tensor()``) and Python scalars to everyone else (``snapshot()``,
``get_snapshot_for_agent()``), converting each field with a single ``.tolist()`` call.
"""

import math
from typing import Any

import torch

from townlet.environment.world import ACTIONS, AFFORDANCES, CAUSE_ALIVE, CAUSE_TIMEOUT, METERS, cause_name
from townlet.population.snapshots import AgentRuntimeSnapshot, ColumnFacts, Facts, RegistrySnapshot

Number = float | int
AFFORDANCE_NAMES: tuple[str, ...] = tuple(a.name for a in AFFORDANCES)
_CAUSE_NAMES = {code: cause_name(code) for code in (CAUSE_ALIVE, CAUSE_TIMEOUT, *range(len(METERS)))}


class AgentRuntimeRegistry:
    """Owns per-agent runtime tensors of shape ``(num_agents,)`` on one device.

    Fields: baseline survival steps (float32, default 0), survival steps this episode (int64), curriculum
    stage (int64, from 1), exploration epsilon (float64: it comes from the learner's Python-float schedule
    and leaves as exactly that value, 0.9 and not float32's 0.8999999761581421), reward accumulated this
    episode (float32), death cause code (int64; a meter index, or ``CAUSE_TIMEOUT``/``CAUSE_ALIVE``), final
    meters (float32, ``(num_agents, len(METERS))``), and this episode's affordance visits and action counts (int64,
    ``(num_agents, len(AFFORDANCES))`` and ``(num_agents, len(ACTIONS))``), from which the snapshot derives
    the entropy of each agent's empirical action distribution.
    """

    def __init__(self, num_agents: int, device: torch.device | str = "cpu") -> None:
        if not isinstance(num_agents, int) or isinstance(num_agents, bool) or num_agents < 1:
            raise ValueError(f"num_agents must be a positive int, got {num_agents!r}")
        self.num_agents = num_agents
        self.device = torch.device(device)
        zeros_f = torch.zeros(num_agents, dtype=torch.float32, device=self.device)
        self._baseline = zeros_f.clone()
        self._epsilon = torch.zeros(num_agents, dtype=torch.float64, device=self.device)
        self._episode_reward = zeros_f.clone()
        self._survival_steps = torch.zeros(num_agents, dtype=torch.long, device=self.device)
        self._stage = torch.ones(num_agents, dtype=torch.long, device=self.device)
        self._death_cause = torch.full((num_agents,), CAUSE_ALIVE, dtype=torch.long, device=self.device)
        self._meters = torch.zeros(num_agents, len(METERS), dtype=torch.float32, device=self.device)
        self._visits = torch.zeros(num_agents, len(AFFORDANCES), dtype=torch.long, device=self.device)
        self._action_counts = torch.zeros(num_agents, len(ACTIONS), dtype=torch.long, device=self.device)

    # -- baseline -------------------------------------------------------------------------------

    def set_baseline(self, agent_idx: int, value: Number | torch.Tensor) -> None:
        """Set one agent's baseline from a float or a 0-d/1-element float tensor on any device."""
        self._check_index(agent_idx)
        scalar = self._as_scalar_tensor(value, what=f"baseline for agent {agent_idx}")
        self._baseline[agent_idx] = scalar

    def set_baselines(self, values: Number | torch.Tensor) -> None:
        """Set every agent's baseline at once: one number for all, or a ``(num_agents,)`` tensor."""
        if isinstance(values, torch.Tensor) and values.numel() != 1:
            if values.shape != (self.num_agents,):
                raise ValueError(
                    f"baselines must have shape ({self.num_agents},), one per agent, got {tuple(values.shape)}: "
                    "pass one number for all agents or a tensor with one entry per agent"
                )
            if not values.is_floating_point():
                raise ValueError(f"baselines must be a float tensor, got {values.dtype}: convert with .float()")
            values = values.detach().to(self.device, torch.float32)
            bad = ~torch.isfinite(values) | (values < 0)
            if bool(bad.any()):
                first = int(bad.nonzero()[0, 0])
                raise ValueError(
                    f"baseline for agent {first} is {float(values[first])}: baselines must be finite and >= 0"
                )
            self._baseline.copy_(values)
            return
        self._baseline.fill_(self._as_scalar_tensor(values, what="baseline for all agents"))

    def get_baseline_tensor(self) -> torch.Tensor:
        """The ``(num_agents,)`` float32 baseline on the registry's device (a copy, no gradient)."""
        return self._baseline.detach().clone()

    # -- other runtime state --------------------------------------------------------------------

    def set_epsilon(self, value: Number | torch.Tensor) -> None:
        """Exploration rate for every agent (a number, or one value per agent)."""
        self._epsilon.copy_(torch.as_tensor(value, dtype=torch.float64).to(self.device).expand(self.num_agents))

    def set_curriculum_stage(self, stage: int | torch.Tensor) -> None:
        """Curriculum stage for every agent (an int, or one value per agent); stages start at 1."""
        self._stage.copy_(torch.as_tensor(stage, dtype=torch.long).to(self.device).expand(self.num_agents))

    def begin_episode(self) -> None:
        """Reset the per-episode fields (survival, reward, death cause, meters, visits, action counts)."""
        self._survival_steps.zero_()
        self._episode_reward.zero_()
        self._death_cause.fill_(CAUSE_ALIVE)
        self._meters.zero_()
        self._visits.zero_()
        self._action_counts.zero_()

    def record_step(
        self,
        step_counts: torch.Tensor,
        rewards: torch.Tensor,
        dones: torch.Tensor,
        death_cause: torch.Tensor,
        meters: torch.Tensor,
    ) -> None:
        """Fold one environment step into the registry (all tensors on the registry's device)."""
        self._survival_steps.copy_(step_counts)
        self._episode_reward += rewards
        self._death_cause.copy_(torch.where(dones, death_cause, self._death_cause))
        self._meters.copy_(meters)

    def record_actions(self, actions: torch.Tensor, acted: torch.Tensor, affordance_used: torch.Tensor) -> None:
        """Count one step's actions (of agents that ``acted``) and affordance visits, all agents at once.

        ``affordance_used[i]`` is the index into ``AFFORDANCES`` agent ``i`` used this step, or -1: a visit is
        a successful interact on an affordance's cell (a refused one, e.g. the fridge without money, is not).
        """
        self._action_counts.scatter_add_(1, actions.long().unsqueeze(1), acted.long().unsqueeze(1))
        used = affordance_used >= 0
        self._visits.scatter_add_(1, affordance_used.clamp(min=0).unsqueeze(1), used.long().unsqueeze(1))

    def action_entropy(self) -> torch.Tensor:
        """Entropy (nats) of each agent's empirical action frequencies this episode; 0 before any action."""
        counts = self._action_counts.float()
        totals = counts.sum(dim=1, keepdim=True).clamp(min=1.0)
        return torch.special.entr(counts / totals).sum(dim=1)

    # -- checkpoints --------------------------------------------------------------------------

    _STATE = (
        "_baseline",
        "_epsilon",
        "_episode_reward",
        "_survival_steps",
        "_stage",
        "_death_cause",
        "_meters",
        "_visits",
        "_action_counts",
    )

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Copies of every per-agent tensor, for a learner checkpoint."""
        return {name.lstrip("_"): getattr(self, name).clone() for name in self._STATE}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore ``state_dict()``'s tensors (same number of agents) onto this registry's device."""
        for name in self._STATE:
            tensor = getattr(self, name)
            stored = state[name.lstrip("_")]
            if stored.shape != tensor.shape:
                raise ValueError(
                    f"checkpoint registry field {name.lstrip('_')} has shape {tuple(stored.shape)}, "
                    f"this registry {tuple(tensor.shape)}: it was written for another number of agents"
                )
            tensor.copy_(stored.to(self.device, tensor.dtype))

    # -- snapshots: the only way out as Python values -------------------------------------------

    def snapshot(self) -> RegistrySnapshot:
        """Every agent's state as Python tuples: exactly one ``.tolist()`` per field (meters and visits
        transposed first, so they arrive one column per meter and per affordance), with each field's facts.

        Float fields are ``+ 0.0`` first, which turns any negative zero into 0.0 (telemetry has no -0.0). The
        facts (each column's value type, min, max and sums, all from one float64 matrix, see ``_facts``) let
        the DTO accept a column without walking its values and the store write the episode's rollup.
        """
        tensors = {
            "baseline_survival_steps": self._baseline + 0.0,
            "survival_steps": self._survival_steps,
            "curriculum_stage": self._stage,
            "epsilon": self._epsilon + 0.0,
            "episode_reward": self._episode_reward + 0.0,
            "meter_columns": (self._meters + 0.0).t(),
            "visit_columns": self._visits.t(),
            "action_entropy": self.action_entropy() + 0.0,
        }
        columns = {name: _as_tuples(tensor) for name, tensor in tensors.items()}
        return RegistrySnapshot.from_registry(
            _facts(tensors) if self.num_agents else {},
            **columns,
            death_cause=tuple(map(_CAUSE_NAMES.__getitem__, self._death_cause.tolist())),
            meter_names=METERS,
            affordance_names=AFFORDANCE_NAMES,
        )

    def get_snapshot_for_agent(self, agent_idx: int) -> AgentRuntimeSnapshot:
        """One agent's state as Python scalars."""
        self._check_index(agent_idx)
        i = slice(agent_idx, agent_idx + 1)
        return AgentRuntimeSnapshot(
            agent_idx=agent_idx,
            baseline_survival_steps=self._baseline[i].tolist()[0],
            survival_steps=self._survival_steps[i].tolist()[0],
            curriculum_stage=self._stage[i].tolist()[0],
            epsilon=self._epsilon[i].tolist()[0],
            episode_reward=self._episode_reward[i].tolist()[0],
            death_cause=cause_name(self._death_cause[i].tolist()[0]),
            meters=dict(zip(METERS, self._meters[agent_idx].tolist(), strict=True)),
            affordance_visits=dict(zip(AFFORDANCE_NAMES, self._visits[agent_idx].tolist(), strict=True)),
            action_entropy=(self.action_entropy()[i] + 0.0).tolist()[0],
        )

    # -- validation -----------------------------------------------------------------------------

    def _check_index(self, agent_idx: int) -> None:
        if not isinstance(agent_idx, int) or isinstance(agent_idx, bool):
            raise TypeError(f"agent index must be an int, got {type(agent_idx).__name__}: pass e.g. 0")
        if not 0 <= agent_idx < self.num_agents:
            raise IndexError(
                f"agent {agent_idx} is out of range for a registry of {self.num_agents} agents: "
                f"use an index in 0..{self.num_agents - 1}"
            )

    def _as_scalar_tensor(self, value: Number | torch.Tensor, *, what: str) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(
                    f"{what} must be a number or a 1-element tensor, got shape {tuple(value.shape)}: "
                    "use set_baselines() to set every agent from one tensor"
                )
            if not value.is_floating_point():
                raise ValueError(f"{what} must be a float tensor, got {value.dtype}: convert with .float()")
            tensor = value.detach().reshape(()).to(self.device, torch.float32)
            number = float(tensor)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
            tensor = torch.tensor(number, dtype=torch.float32, device=self.device)
        else:
            raise TypeError(f"{what} must be a float or a tensor, got {type(value).__name__}")
        if not math.isfinite(number) or number < 0:
            raise ValueError(f"{what} is {number}: pass a finite number of steps >= 0")
        return tensor


def _as_tuples(tensor: torch.Tensor) -> tuple[Any, ...]:
    """One ``.tolist()`` as tuples (a 2-d tensor as a tuple of tuples): a snapshot's columns cannot change."""
    values = tensor.tolist()
    return tuple(map(tuple, values)) if tensor.dim() == 2 else tuple(values)


def _facts(tensors: dict[str, torch.Tensor]) -> dict[str, Facts]:
    """Each column's facts (a 2-d field's, one per column): the Python type ``.tolist()`` gives, min and max
    (NaN propagates into both), and the sums of the values and their squares added in agent order.

    Every column goes into one float64 matrix on the CPU (exact for the registry's float32 and small integer
    values; a float32 square is exact in float64), where ``cumsum`` adds each row one value after another
    (a CUDA scan would add in another order): one ``.tolist()`` for all the facts, never ``.item()``.
    """
    rows = [tensor.reshape(1, -1) if tensor.dim() == 1 else tensor for tensor in tensors.values()]
    matrix = torch.cat([row.to(torch.float64) for row in rows]).cpu()
    low, high = torch.aminmax(matrix, dim=1)
    measured = torch.stack([low, high, matrix.cumsum(1)[:, -1], (matrix * matrix).cumsum(1)[:, -1]]).t().tolist()
    facts: dict[str, Facts] = {}
    at = 0
    for (name, tensor), row in zip(tensors.items(), rows, strict=True):
        kind = float if tensor.is_floating_point() else int
        columns = tuple(_column_facts(kind, *values) for values in measured[at : at + len(row)])
        facts[name] = columns if tensor.dim() == 2 else columns[0]
        at += len(row)
    return facts


#: Integers up to this size are exact in float64; a column with larger ones gets bounds only (they may round).
_EXACT_INT = 2**53


def _column_facts(kind: type, low: float, high: float, total: float, total_of_squares: float) -> ColumnFacts:
    if kind is float:
        return ColumnFacts(float, low, high, total, total_of_squares)
    if low >= -_EXACT_INT and high <= _EXACT_INT:  # as .tolist() gives them
        return ColumnFacts(int, int(low), int(high), total, total_of_squares)
    return ColumnFacts(int, int(low), int(high))  # may round, but never across the DTO's int bounds (0 and 1)
