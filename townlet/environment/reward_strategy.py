"""``RewardStrategy``: survival-relative reward shaping, stateless (the baseline is an argument)."""

import torch


class RewardStrategy:
    """Turns step counts and episode ends into rewards against a per-agent baseline; owns no baseline.

    ``calculate_rewards(step_counts, dones, baseline_steps_tensor)``:

    - ``step_counts[i]`` is the number of steps agent ``i`` has survived *including the step just taken*
      (the fatal step counts: an agent that dies on its very first step passes 1, one that times out at
      ``max_steps`` passes ``max_steps``).
    - An agent whose episode ended on this step (``dones[i]``, by death or timeout) receives
      ``step_counts[i] - baseline[i]``: how many steps longer (positive) or shorter (negative) it lived
      than an agent that does nothing would have. Every other agent receives 0.
    - All three tensors have shape ``(num_agents,)`` and live on one device; the result is float32 on that
      device with no gradient tracking.
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = torch.device(device) if device is not None else None

    def calculate_rewards(
        self,
        step_counts: torch.Tensor,
        dones: torch.Tensor,
        baseline_steps_tensor: torch.Tensor,
    ) -> torch.Tensor:
        """Rewards for one step, one per agent (see the class docstring for the contract)."""
        if step_counts.dim() != 1:
            raise ValueError(f"step_counts must be 1-D (num_agents,), got shape {tuple(step_counts.shape)}")
        n = step_counts.shape[0]
        for name, tensor in (("dones", dones), ("baseline_steps_tensor", baseline_steps_tensor)):
            if tensor.shape != (n,):
                raise ValueError(
                    f"{name} must have shape ({n},) to match step_counts, got {tuple(tensor.shape)}; "
                    "pass one value per agent (registry.get_baseline_tensor() for the baseline)"
                )
            if tensor.device != step_counts.device:
                raise ValueError(
                    f"{name} is on {tensor.device} but step_counts is on {step_counts.device}: move them to one device"
                )
        if self.device is not None and step_counts.device != self.device:
            raise ValueError(f"this RewardStrategy runs on {self.device}, got tensors on {step_counts.device}")
        if dones.dtype != torch.bool:
            raise ValueError(f"dones must be a bool tensor, got {dones.dtype}")
        with torch.no_grad():
            relative = step_counts.to(torch.float32) - baseline_steps_tensor.to(torch.float32)
            return torch.where(dones, relative, torch.zeros_like(relative))
