"""Test oracle: the legacy design, one mutable scalar ``baseline_survival_steps`` on the strategy.

Kept only to prove the stateless ``RewardStrategy`` reproduces it whenever every agent shares a baseline.
"""

import torch


class LegacyScalarRewardStrategy:
    def __init__(self, baseline_survival_steps: float) -> None:
        self.baseline_survival_steps = baseline_survival_steps

    def calculate_rewards(self, step_counts: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        rewards = torch.zeros(step_counts.shape[0], dtype=torch.float32, device=step_counts.device)
        for i in range(step_counts.shape[0]):
            if bool(dones[i]):
                rewards[i] = float(step_counts[i]) - self.baseline_survival_steps
        return rewards
