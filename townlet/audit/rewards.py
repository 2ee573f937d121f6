"""The reward audit: every stored episode reward recomputed from the stored steps, end and baseline.

It runs the project's own ``RewardStrategy`` (so it imports torch, unlike the rest of the read side) over
the stored rows in batches: an agent whose episode ended (every stored agent's did, by death or timeout)
receives ``survival_steps - baseline`` once, every other step 0, so the episode's reward is that value. A
row whose stored reward differs from the recomputed one by more than ``TOLERANCE`` (relative, at least
absolute 1e-6: the rewards are float32 sums) is a mismatch: the reward path and the registry's baseline
disagreed, or the row was changed afterwards.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class RewardMismatch:
    """One stored reward that the reward strategy does not reproduce."""

    episode: int
    agent_idx: int
    survival_steps: int
    death_cause: str
    baseline_survival_steps: float
    stored_reward: float
    expected_reward: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "episode": self.episode,
            "agent_idx": self.agent_idx,
            "survival_steps": self.survival_steps,
            "death_cause": self.death_cause,
            "baseline_survival_steps": self.baseline_survival_steps,
            "stored_reward": self.stored_reward,
            "expected_reward": self.expected_reward,
        }


def expected_rewards(survival: list[int], baselines: list[float]) -> list[float]:
    """What ``RewardStrategy`` pays over a whole episode for agents that all ended it (batched, float32)."""
    import torch

    from townlet.environment.reward_strategy import RewardStrategy

    steps = torch.tensor(survival, dtype=torch.long)
    ended = torch.ones(len(survival), dtype=torch.bool)
    return RewardStrategy().calculate_rewards(steps, ended, torch.tensor(baselines, dtype=torch.float32)).tolist()


def find_mismatches(batches: Iterable[list[dict[str, Any]]]) -> Iterator[RewardMismatch]:
    """Stored agent payloads in, every row whose reward is not reproduced out (streamed, batch by batch)."""
    for agents in batches:
        if not agents:
            continue
        survival = [a["survival_steps"] for a in agents]
        expected = expected_rewards(survival, [a["baseline_survival_steps"] for a in agents])
        for agent, want in zip(agents, expected, strict=True):
            stored = agent["episode_reward"]
            if abs(stored - want) > TOLERANCE * max(1.0, abs(want)):
                yield RewardMismatch(
                    agent["episode"],
                    agent["agent_idx"],
                    agent["survival_steps"],
                    agent["death_cause"],
                    agent["baseline_survival_steps"],
                    stored,
                    want,
                )
