"""The training loop: learns, is reproducible on CPU, and keeps the registry in step with the episode."""

import dataclasses
import statistics

import pytest
import torch

from townlet.config import CurriculumConfig, StageConfig, load_config, with_overrides
from townlet.training.loop import Trainer


def _config(episodes=3, agents=4, seed=0, stages=None):
    config = with_overrides(load_config(), "training", episodes=episodes, agents=agents, seed=seed, device="cpu")
    if stages is not None:
        config = dataclasses.replace(config, curriculum=CurriculumConfig(stages=stages))
    return config


def test_same_seed_on_cpu_gives_identical_per_episode_survival():
    runs = [[r.snapshot.survival_steps for r in Trainer(_config(seed=3)).run(3)] for _ in range(2)]
    assert runs[0] == runs[1]
    other = [r.snapshot.survival_steps for r in Trainer(_config(seed=4)).run(3)]
    assert other != runs[0]


def test_episode_snapshot_matches_the_episode(device):
    trainer = Trainer(_config(episodes=1, agents=5), device)
    report = trainer.run_episode(1)
    snap = report.snapshot
    assert snap.num_agents == 5
    assert report.steps == max(snap.survival_steps)
    assert all(cause != "alive" for cause in snap.death_cause)
    for steps, reward, baseline in zip(
        snap.survival_steps, snap.episode_reward, snap.baseline_survival_steps, strict=True
    ):
        assert reward == pytest.approx(steps - baseline)


def test_stop_is_checked_after_each_episode():
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) == 2

    reports = list(Trainer(_config()).run(10, first_episode=5, stop=stop))
    assert [r.episode for r in reports] == [5, 6]


@pytest.mark.slow
def test_training_beats_the_random_policy_by_a_robust_margin():
    torch.set_num_threads(1)
    trainer = Trainer(_config(agents=8, seed=1, stages=(StageConfig(1.0, ("energy",)),)))
    random_policy = trainer.evaluate(5, epsilon=1.0)
    survival = [report.mean_survival for report in trainer.run(20)]
    learned = statistics.fmean(survival[-10:])
    assert learned >= 1.25 * random_policy, (learned, random_policy)
