"""``ReplayBuffer``: a fixed-size ring of transitions kept as tensors on the learner's device."""

from typing import Any

import torch


class ReplayBuffer:
    """Owns ``capacity`` transitions (obs, action, reward, next obs, done); oldest are overwritten."""

    def __init__(self, capacity: int, obs_dim: int, device: torch.device) -> None:
        self.capacity = capacity
        self.device = device
        self.obs = torch.zeros(capacity, obs_dim, device=device)
        self.next_obs = torch.zeros(capacity, obs_dim, device=device)
        self.actions = torch.zeros(capacity, dtype=torch.long, device=device)
        self.rewards = torch.zeros(capacity, device=device)
        self.dones = torch.zeros(capacity, device=device)
        self._next = 0
        self.size = 0

    def add(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        next_obs: torch.Tensor,
        dones: torch.Tensor,
    ) -> None:
        """Append a batch of transitions (one row each)."""
        n = obs.shape[0]
        if n == 0:
            return
        idx = (torch.arange(n, device=self.device) + self._next) % self.capacity
        self.obs[idx] = obs
        self.next_obs[idx] = next_obs
        self.actions[idx] = actions
        self.rewards[idx] = rewards
        self.dones[idx] = dones.to(torch.float32)
        self._next = (self._next + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def state_dict(self) -> dict[str, Any]:
        """The filled part of the ring (a checkpoint of a young buffer stays small) and where it writes next."""
        n = self.size
        return {
            "obs": self.obs[:n].clone(),
            "next_obs": self.next_obs[:n].clone(),
            "actions": self.actions[:n].clone(),
            "rewards": self.rewards[:n].clone(),
            "dones": self.dones[:n].clone(),
            "next": self._next,
            "size": self.size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict()`` returned (same capacity and observation size)."""
        n = int(state["size"])
        if n > self.capacity or state["obs"].shape[1:] != self.obs.shape[1:]:
            raise ValueError(
                f"checkpoint replay buffer holds {n} x {tuple(state['obs'].shape[1:])}, this one "
                f"{self.capacity} x {tuple(self.obs.shape[1:])}"
            )
        for name in ("obs", "next_obs", "actions", "rewards", "dones"):
            getattr(self, name).zero_()[:n] = state[name].to(self.device)
        self._next, self.size = int(state["next"]), n

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """A uniform random batch: (obs, actions, rewards, next_obs, dones)."""
        idx = torch.randint(0, self.size, (batch_size,), device=self.device, generator=generator)
        return self.obs[idx], self.actions[idx], self.rewards[idx], self.next_obs[idx], self.dones[idx]
