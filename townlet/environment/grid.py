"""``VectorizedGridEnv``: every agent in its own copy of a small grid, all stepped in one batched tensor op."""

from dataclasses import dataclass

import torch

from townlet.environment.world import (
    ACTIONS,
    AFFORDANCES,
    CAUSE_ALIVE,
    CAUSE_TIMEOUT,
    EMPTY_EPSILON,
    INITIAL_METERS,
    INTERACT,
    METERS,
    VITAL_METERS,
)

# Row/column deltas for each action; interact stays put.
_MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1), (0, 0))


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one batched step produced, one entry per agent (all tensors on the env's device)."""

    observations: torch.Tensor  # (N, obs_dim) float32
    step_counts: torch.Tensor  # (N,) int64: steps survived so far, counting this step
    dones: torch.Tensor  # (N,) bool: the agent's episode ended on this step (death or timeout)
    alive_before: torch.Tensor  # (N,) bool: the agent was still acting when this step began
    death_cause: torch.Tensor  # (N,) int64: meter index, CAUSE_TIMEOUT, or CAUSE_ALIVE
    affordance_used: torch.Tensor  # (N,) int64: index into AFFORDANCES used this step, or -1


class VectorizedGridEnv:
    """Owns positions, meters and step counters of ``num_agents`` independent agents on one device.

    An agent's episode ends when an active vital meter reaches 0 (death, cause = that meter) or at
    ``max_steps`` (timeout). Finished agents are frozen until ``reset()``; the episode is over when all are.
    """

    num_actions = len(ACTIONS)
    obs_dim = 2 + len(METERS)
    #: Observation columns holding the vital meters.
    vital_obs_columns: tuple[int, ...] = tuple(2 + METERS.index(m) for m in VITAL_METERS)

    def __init__(
        self,
        num_agents: int,
        *,
        grid_size: int = 8,
        max_steps: int = 200,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> None:
        if num_agents < 1:
            raise ValueError(f"num_agents must be at least 1, got {num_agents}")
        if grid_size < 6:
            raise ValueError(f"grid_size must be at least 6 to hold every affordance, got {grid_size}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        self.num_agents = num_agents
        self.grid_size = grid_size
        self.max_steps = max_steps
        self.device = torch.device(device)
        self.generator = generator
        self._moves = torch.tensor(_MOVES, dtype=torch.long, device=self.device)
        self._initial = torch.tensor([INITIAL_METERS[m] for m in METERS], device=self.device)
        self._cell_affordance = torch.full((grid_size, grid_size), -1, dtype=torch.long, device=self.device)
        effects = torch.zeros(len(AFFORDANCES) + 1, len(METERS), device=self.device)  # last row: no affordance
        for i, aff in enumerate(AFFORDANCES):
            self._cell_affordance[aff.row, aff.col] = i
            for meter, delta in aff.effects.items():
                effects[i, METERS.index(meter)] = delta
        self._effects = effects
        self._is_vital = torch.tensor([m in VITAL_METERS for m in METERS], device=self.device)
        self._depletion = torch.zeros(len(METERS), device=self.device)
        self._lethal = self._is_vital.clone()
        self.positions = torch.zeros(num_agents, 2, dtype=torch.long, device=self.device)
        self.meters = self._initial.expand(num_agents, -1).clone()
        self.step_counts = torch.zeros(num_agents, dtype=torch.long, device=self.device)
        self.done = torch.ones(num_agents, dtype=torch.bool, device=self.device)

    def set_depletion(self, rates: torch.Tensor | list[float]) -> None:
        """Per-step loss of each meter (curriculum stage); a vital meter with rate 0 cannot kill."""
        rates_t = torch.as_tensor(rates, dtype=torch.float32, device=self.device)
        if rates_t.shape != (len(METERS),):
            raise ValueError(f"depletion needs one rate per meter {METERS}, got shape {tuple(rates_t.shape)}")
        self._depletion = rates_t
        self._lethal = self._is_vital & (rates_t > 0)

    @property
    def all_done(self) -> bool:
        """True once every agent's episode has ended (one device sync)."""
        return bool(self.done.all())

    def reset(self) -> torch.Tensor:
        """Start a new episode for every agent: random cells, initial meters; returns observations."""
        self.positions = torch.randint(
            0, self.grid_size, (self.num_agents, 2), device=self.device, generator=self.generator
        )
        self.meters = self._initial.expand(self.num_agents, -1).clone()
        self.step_counts.zero_()
        self.done.zero_()
        return self.observe()

    def observe(self) -> torch.Tensor:
        """Observations: position scaled to [0, 1] followed by the meter values."""
        scaled = self.positions.to(torch.float32) / (self.grid_size - 1)
        return torch.cat([scaled, self.meters], dim=1)

    def step(self, actions: torch.Tensor) -> StepResult:
        """Apply one action per agent; agents already done ignore theirs."""
        if actions.shape != (self.num_agents,):
            raise ValueError(f"actions must have shape ({self.num_agents},), got {tuple(actions.shape)}")
        alive = ~self.done
        alive_f = alive.unsqueeze(1)
        actions = actions.to(self.device)

        moved = self.positions + self._moves[actions] * alive_f
        self.positions = moved.clamp(0, self.grid_size - 1)

        cell = self._cell_affordance[self.positions[:, 0], self.positions[:, 1]]
        effects = self._effects[cell]  # cell == -1 picks the all-zero last row
        affordable = ((self.meters + effects) >= 0).all(dim=1)
        used = (actions == INTERACT) & alive & (cell >= 0) & affordable
        meters = self.meters + effects * used.unsqueeze(1)
        meters = meters - self._depletion * alive_f
        self.meters = meters.clamp(0.0, 1.0)

        self.step_counts += alive.long()
        empty = (self.meters <= EMPTY_EPSILON) & self._lethal
        died = alive & empty.any(dim=1)
        timed_out = alive & ~died & (self.step_counts >= self.max_steps)
        cause = torch.full_like(self.step_counts, CAUSE_ALIVE)
        cause = torch.where(died, empty.to(torch.int8).argmax(dim=1), cause)
        cause = torch.where(timed_out, torch.full_like(cause, CAUSE_TIMEOUT), cause)
        dones = died | timed_out
        self.done |= dones
        return StepResult(
            observations=self.observe(),
            step_counts=self.step_counts.clone(),
            dones=dones,
            alive_before=alive,
            death_cause=cause,
            affordance_used=torch.where(used, cell, torch.full_like(cell, -1)),
        )
