"""The learner's parts (townlet 0.12): what it learns from, where its value ends, its targets, its view of cells."""

import dataclasses

import pytest
import torch
from torch import nn

from townlet.config import ConfigError, CurriculumConfig, PopulationConfig, StageConfig, load_config, with_overrides
from townlet.environment.grid import VectorizedGridEnv
from townlet.environment.world import CAUSE_TIMEOUT
from townlet.population.vectorized import CellOneHot, VectorizedPopulation, q_network
from townlet.training.loop import Trainer


def _population(n=3, **overrides):
    config = dataclasses.replace(PopulationConfig(), **overrides)
    env = VectorizedGridEnv(n, max_steps=2)
    population = VectorizedPopulation(
        n, env.obs_dim, env.num_actions, config, torch.device("cpu"), None, env.vital_obs_columns, env.grid_size
    )
    return population, env


def _alive_dead_timed_out(population, env):
    """One step after which agent 0 lives on, agent 1 has died of energy and agent 2 has timed out."""
    env.set_depletion([0.01, 0.0, 0.0, 0.0])
    obs = env.reset()
    env.meters[1, 0] = 0.005  # empties on this step
    env.step_counts[2] = 1  # max_steps is 2: this step is agent 2's last
    obs = env.observe()
    step = env.step(torch.zeros(3, dtype=torch.long))
    assert step.dones.tolist() == [False, True, True] and int(step.death_cause[2]) == CAUSE_TIMEOUT
    return obs, step


def test_cells_enter_the_network_one_hot_and_the_meters_pass_through():
    env = VectorizedGridEnv(2, grid_size=8)
    env.reset()
    env.positions = torch.tensor([[0, 7], [3, 5]])
    seen = CellOneHot(8)(env.observe())
    assert seen.shape == (2, 8 + 8 + 4)
    assert seen[0, :16].nonzero().flatten().tolist() == [0, 8 + 7]
    assert seen[1, :16].nonzero().flatten().tolist() == [3, 8 + 5]
    assert torch.equal(seen[:, 16:], env.meters)
    for grid_size in (6, 7, 8, 11, 13):  # every cell of each grid decodes to itself (p / (g - 1) * (g - 1))
        env = VectorizedGridEnv(grid_size * grid_size, grid_size=grid_size)
        env.reset()
        env.positions = torch.cartesian_prod(torch.arange(grid_size), torch.arange(grid_size))
        hot = CellOneHot(grid_size)(env.observe())[:, : 2 * grid_size]
        decoded = torch.stack([hot[:, :grid_size].argmax(1), hot[:, grid_size:].argmax(1)], dim=1)
        assert torch.equal(decoded, env.positions) and torch.equal(hot.sum(1), torch.full((grid_size**2,), 2.0))
    assert isinstance(q_network(6, 5, 16, grid_size=8)[0], CellOneHot)
    assert q_network(6, 5, 16, grid_size=8)[1].in_features == 20 and q_network(6, 5, 16)[0].in_features == 6


def test_the_default_learner_sees_cells_one_hot_and_scaled_keeps_two_numbers():
    assert isinstance(_population()[0].q_net[0], CellOneHot)
    assert isinstance(_population(position_encoding="scaled")[0].q_net[0], nn.Linear)
    with pytest.raises(ValueError, match="needs the grid_size"):
        VectorizedPopulation(2, 6, 5, PopulationConfig(), torch.device("cpu"))
    with pytest.raises(ConfigError, match="position_encoding must be one of one_hot, scaled"):
        with_overrides(load_config(), "population", position_encoding="onehot")


def test_each_step_alive_pays_and_a_death_pays_nothing_more_than_its_last_step():
    population, env = _population(shaping_weight=0.0)
    obs, step = _alive_dead_timed_out(population, env)
    telemetry = torch.tensor([0.0, -98.0, 102.0])  # what RewardStrategy pays at the ends
    assert population.learning_rewards(telemetry, obs, step).tolist() == pytest.approx([0.01, 0.0, 0.01])


def test_the_0_11_settings_learn_from_the_telemetry_reward_alone_as_before():
    population, env = _population(terminal_weight=1.0, alive_reward=0.0, bootstrap_timeouts=False)
    obs, step = _alive_dead_timed_out(population, env)
    telemetry = torch.tensor([0.0, -98.0, 102.0])
    phi = obs[:, list(env.vital_obs_columns)].min(dim=1).values
    phi_next = step.observations[:, list(env.vital_obs_columns)].min(dim=1).values * ~step.dones
    before = telemetry * 0.01 + (0.98 * phi_next - phi)  # townlet 0.11's formula
    assert torch.equal(population.learning_rewards(telemetry, obs, step), before)


def test_a_timeout_is_bootstrapped_and_keeps_its_potential_a_death_ends_the_value():
    population, env = _population()
    obs, step = _alive_dead_timed_out(population, env)
    assert population.terminal(step).tolist() == [False, True, False]
    shaped = population.learning_rewards(torch.zeros(3), obs, step) - torch.tensor([0.01, 0.0, 0.01])
    phi = obs[:, 2].tolist()  # energy is every agent's lowest vital meter here
    assert shaped[2].item() == pytest.approx(0.98 * step.observations[2, 2].item() - phi[2])  # not -phi
    assert shaped[1].item() == pytest.approx(-phi[1])
    old, _ = _population(bootstrap_timeouts=False)
    assert old.terminal(step).tolist() == [False, True, True]
    population.observe(obs, torch.zeros(3, dtype=torch.long), torch.zeros(3), step)
    assert population.replay.dones[:3].tolist() == [0.0, 1.0, 0.0]


class _Fixed(nn.Module):
    def __init__(self, values):
        super().__init__()
        self.values = torch.tensor([values])

    def forward(self, x):
        return self.values.expand(x.shape[0], -1)


def test_double_dqn_values_the_online_networks_choice_with_the_target_network():
    population, _ = _population(gamma=0.5)
    population.q_net, population.target_net = _Fixed([1.0, 0.0, 0.0, 0.0, 0.0]), _Fixed([2.0, 8.0, 0.0, 0.0, 0.0])
    rewards, next_obs, dones = torch.tensor([1.0, 1.0]), torch.zeros(2, 6), torch.tensor([0.0, 1.0])
    assert population.targets(rewards, next_obs, dones).tolist() == [1.0 + 0.5 * 2.0, 1.0]
    population.config = dataclasses.replace(population.config, double_dqn=False)
    assert population.targets(rewards, next_obs, dones).tolist() == [1.0 + 0.5 * 8.0, 1.0]


@pytest.mark.parametrize(("stage_epsilon", "after"), [(0.5, 0.5), (0.0, 0.18)])
def test_a_stage_change_raises_epsilon_back_to_stage_epsilon(stage_epsilon, after):
    config = with_overrides(load_config(), "training", agents=2, device="cpu")
    config = with_overrides(config, "population", epsilon_start=0.2, stage_epsilon=stage_epsilon)
    stages = (StageConfig(1.0, ("energy",)), StageConfig(1.0, ("energy", "hygiene")))
    config = dataclasses.replace(config, curriculum=CurriculumConfig(stages=stages, window=1, advance_threshold=0.01))
    trainer = Trainer(config)
    report = trainer.run_episode(1)
    assert report.stage_change is not None and report.epsilon == pytest.approx(0.2)
    assert trainer.population.epsilon == pytest.approx(after)
    assert trainer.registry.snapshot().epsilon[0] == pytest.approx(after)  # published with the stage
    trainer.run_episode(2)  # no change at the last stage: only the decay
    assert trainer.population.epsilon == pytest.approx(max(0.05, after * 0.9))
