"""The vectorised grid world: batched steps, meters, affordances, death causes and timeouts."""

import math

import pytest
import torch

from townlet.config import StageConfig
from townlet.curriculum.stages import baseline_survival_steps, depletion_rates
from townlet.environment.grid import VectorizedGridEnv
from townlet.environment.world import ACTIONS, AFFORDANCES, CAUSE_ALIVE, CAUSE_TIMEOUT, INTERACT, METERS

UP, DOWN, LEFT, RIGHT = (ACTIONS.index(a) for a in ("up", "down", "left", "right"))
ENERGY_ONLY = StageConfig(1.0, ("energy",))


def _env(n=2, device="cpu", max_steps=500, stage=ENERGY_ONLY):
    env = VectorizedGridEnv(n, max_steps=max_steps, device=device, generator=torch.Generator().manual_seed(0))
    env.set_depletion(depletion_rates(stage))
    env.reset()
    return env


def _place(env, *cells):
    env.positions = torch.tensor(cells, dtype=torch.long, device=env.device)


def test_moves_are_clamped_at_the_walls(device):
    env = _env(device=device)
    _place(env, (0, 0), (7, 7))
    env.step(torch.tensor([UP, DOWN], device=device))
    assert env.positions.cpu().tolist() == [[0, 0], [7, 7]]
    env.step(torch.tensor([RIGHT, LEFT], device=device))
    assert env.positions.cpu().tolist() == [[0, 1], [7, 6]]


def test_all_agents_step_in_one_batch_with_independent_state(device):
    env = _env(n=3, device=device)
    _place(env, (3, 3), (3, 3), (3, 3))
    env.step(torch.tensor([UP, LEFT, INTERACT], device=device))
    assert env.positions.cpu().tolist() == [[2, 3], [3, 2], [3, 3]]


def test_idle_agent_survives_exactly_the_curriculum_baseline(device):
    for stage in (ENERGY_ONLY, StageConfig(1.25, ("energy", "hygiene", "satiation")), StageConfig(2.0, ("hygiene",))):
        env = _env(n=1, device=device, stage=stage)
        _place(env, (0, 0))  # no affordance: interact does nothing
        steps = 0
        while not env.all_done:
            result = env.step(torch.tensor([INTERACT], device=device))
            steps += 1
        assert steps == math.ceil(baseline_survival_steps(stage) - 1e-9)  # the step on which it dies counts
        assert int(result.death_cause[0]) != CAUSE_TIMEOUT


def test_death_cause_is_the_meter_that_ran_out(device):
    env = _env(n=1, device=device, stage=StageConfig(1.0, ("energy", "hygiene")))
    env.meters[0, METERS.index("hygiene")] = 0.005
    _place(env, (0, 0))
    result = env.step(torch.tensor([INTERACT], device=device))
    assert result.dones.tolist() == [True]
    assert int(result.death_cause[0]) == METERS.index("hygiene")
    assert int(result.step_counts[0]) == 1


def test_timeout_at_max_steps(device):
    env = _env(n=1, device=device, max_steps=5)
    for _ in range(4):
        assert not env.step(torch.tensor([UP], device=device)).dones.any()
    result = env.step(torch.tensor([UP], device=device))
    assert result.dones.tolist() == [True]
    assert int(result.death_cause[0]) == CAUSE_TIMEOUT
    assert int(result.step_counts[0]) == 5


def test_finished_agents_are_frozen_until_reset(device):
    env = _env(n=2, device=device, max_steps=3)
    env.done[1] = True
    before = env.positions[1].clone()
    result = env.step(torch.tensor([DOWN, DOWN], device=device))
    assert torch.equal(env.positions[1], before)
    assert result.alive_before.cpu().tolist() == [True, False]
    assert int(result.death_cause[1]) == CAUSE_ALIVE
    assert int(env.step_counts[1]) == 0


@pytest.mark.parametrize("affordance", AFFORDANCES, ids=lambda a: a.name)
def test_interact_on_an_affordance_applies_its_effects(affordance):
    env = _env(n=1)
    env.set_depletion([0.0] * len(METERS))
    env.meters[0] = 0.5
    _place(env, (affordance.row, affordance.col))
    result = env.step(torch.tensor([INTERACT]))
    assert int(result.affordance_used[0]) == AFFORDANCES.index(affordance)
    for meter, delta in affordance.effects.items():
        assert env.meters[0, METERS.index(meter)].item() == pytest.approx(min(1.0, 0.5 + delta))


def test_affordance_refuses_when_a_cost_is_unaffordable():
    fridge = next(a for a in AFFORDANCES if a.name == "fridge")
    env = _env(n=1)
    env.set_depletion([0.0] * len(METERS))
    env.meters[0] = torch.tensor([1.0, 1.0, 0.2, 0.05])
    _place(env, (fridge.row, fridge.col))
    result = env.step(torch.tensor([INTERACT]))
    assert int(result.affordance_used[0]) == -1
    assert env.meters[0].tolist() == pytest.approx([1.0, 1.0, 0.2, 0.05])


def test_observation_holds_scaled_position_and_meters():
    env = _env(n=1)
    _place(env, (7, 0))
    obs = env.observe()
    assert obs.shape == (1, env.obs_dim)
    assert obs[0, :2].tolist() == [1.0, 0.0]
    assert obs[0, 2:].tolist() == env.meters[0].tolist()


def test_bad_action_shape_is_refused():
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        _env(n=2).step(torch.tensor([UP]))
