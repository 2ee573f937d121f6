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


#: What ``RewardCheck.mismatches`` reads per row, after (episode, agent): ``TelemetryReader.agent_columns``.
COLUMNS = ("survival_steps", "death_cause", "baseline_survival_steps", "episode_reward")


class RewardCheck:
    """Counts the rows checked while ``mismatches`` streams the ones that are not reproduced."""

    def __init__(self) -> None:
        self.checked = 0

    def mismatches(self, batches: Iterable[list[tuple[Any, ...]]]) -> Iterator[RewardMismatch]:
        """``(episode, agent, *COLUMNS)`` rows in, in batches: each batch recomputed by ``RewardStrategy`` in one
        tensor call and compared in one tensor operation; only the rows that differ become Python objects."""
        import torch

        from townlet.environment.reward_strategy import RewardStrategy

        strategy = RewardStrategy()
        for rows in batches:
            if not rows:
                continue
            self.checked += len(rows)
            _, _, survival, _, baselines, stored = zip(*rows, strict=True)
            steps = torch.tensor(survival, dtype=torch.long)
            expected = strategy.calculate_rewards(
                steps, torch.ones(len(rows), dtype=torch.bool), torch.tensor(baselines, dtype=torch.float32)
            ).double()
            error = (torch.tensor(stored, dtype=torch.float64) - expected).abs()
            off = error > TOLERANCE * expected.abs().clamp(min=1.0)
            for i in off.nonzero().flatten().tolist():
                episode, agent, steps_i, cause, baseline, reward = rows[i]
                yield RewardMismatch(episode, agent, steps_i, cause, baseline, reward, float(expected[i]))
