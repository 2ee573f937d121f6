"""The curriculum computes the baseline from the stage, only on stage change, and pushes it into the registry."""

import pytest
import torch

from townlet.config import CurriculumConfig, StageConfig
from townlet.curriculum.stages import Curriculum, baseline_survival_steps
from townlet.environment.grid import VectorizedGridEnv
from townlet.population.runtime_registry import AgentRuntimeRegistry

STAGES = (StageConfig(1.0, ("energy",)), StageConfig(1.25, ("energy", "hygiene")), StageConfig(2.0, ("energy",)))


def test_baseline_is_initial_over_fastest_vital_depletion():
    assert baseline_survival_steps(StageConfig(1.0, ("energy",))) == pytest.approx(100.0)  # 1.0 / 0.010
    assert baseline_survival_steps(StageConfig(1.25, ("energy",))) == pytest.approx(80.0)
    assert baseline_survival_steps(StageConfig(1.0, ("hygiene",))) == pytest.approx(125.0)  # 1.0 / 0.008
    assert baseline_survival_steps(StageConfig(2.0, ("energy", "hygiene"))) == pytest.approx(50.0)


def test_baseline_needs_a_depleting_vital_meter():
    with pytest.raises(ValueError, match="never dies"):
        baseline_survival_steps(StageConfig(1.0, ("money",)))


class SpyRegistry(AgentRuntimeRegistry):
    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.baseline_pushes: list[float] = []

    def set_baselines(self, values) -> None:
        self.baseline_pushes.append(float(values))
        super().set_baselines(values)


def _setup(window=2, threshold=0.5):
    config = CurriculumConfig(stages=STAGES, window=window, advance_threshold=threshold)
    curriculum = Curriculum(config, max_steps=100)
    env, registry = VectorizedGridEnv(3, max_steps=100), SpyRegistry(3)
    curriculum.apply(env, registry)
    return curriculum, env, registry


def test_baseline_is_recomputed_only_when_the_stage_changes():
    curriculum, env, registry = _setup()
    assert registry.baseline_pushes == [pytest.approx(100.0)]
    for _ in range(5):
        assert curriculum.end_episode(10.0, env, registry) is None
    assert len(registry.baseline_pushes) == 1
    curriculum.end_episode(60.0, env, registry)
    change = curriculum.end_episode(60.0, env, registry)
    assert change is not None and (change.from_stage, change.to_stage) == (1, 2)
    assert registry.baseline_pushes == [pytest.approx(100.0), pytest.approx(80.0)]


def test_stage_change_updates_registry_stage_baseline_and_world_depletion():
    curriculum, env, registry = _setup(window=1)
    curriculum.end_episode(99.0, env, registry)
    snapshot = registry.snapshot()
    assert snapshot.curriculum_stage == (2, 2, 2)
    assert snapshot.baseline_survival_steps == (80.0, 80.0, 80.0)
    assert env._depletion.tolist() == pytest.approx([0.0125, 0.01, 0.0, 0.0])


def test_advance_needs_a_full_window_above_threshold():
    curriculum, env, registry = _setup(window=3, threshold=0.5)
    assert curriculum.end_episode(90.0, env, registry) is None  # window not full yet
    assert curriculum.end_episode(90.0, env, registry) is None
    assert curriculum.end_episode(10.0, env, registry) is not None  # mean 63.3 >= 50
    assert curriculum.stage == 2
    for survival in (10.0, 10.0, 90.0):  # mean 36.7 < 50
        assert curriculum.end_episode(survival, env, registry) is None
    assert curriculum.stage == 2


def test_last_stage_never_advances():
    curriculum, env, registry = _setup(window=1)
    for _ in range(10):
        curriculum.end_episode(100.0, env, registry)
    assert curriculum.stage == len(STAGES)
    assert len(registry.baseline_pushes) == len(STAGES)


def test_registry_tensors_stay_on_registry_device(device):
    curriculum = Curriculum(CurriculumConfig(stages=STAGES), max_steps=100)
    registry = AgentRuntimeRegistry(2, device)
    curriculum.apply(VectorizedGridEnv(2, device=device), registry)
    assert registry.get_baseline_tensor().device.type == device.type
    assert torch.allclose(registry.get_baseline_tensor().cpu(), torch.tensor([100.0, 100.0]))
