"""VectorizedPopulation: one batched DQN for all agents, owning the registry that holds the baseline."""

import dataclasses

import torch

from townlet.config import PopulationConfig
from townlet.environment.grid import VectorizedGridEnv
from townlet.population.runtime_registry import AgentRuntimeRegistry
from townlet.population.vectorized import VectorizedPopulation


def _population(n=4, device="cpu", **overrides):
    config = dataclasses.replace(PopulationConfig(), **overrides)
    env = VectorizedGridEnv(n, device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    population = VectorizedPopulation(
        n, env.obs_dim, env.num_actions, config, torch.device(device), generator, env.vital_obs_columns, env.grid_size
    )
    return population, env


def test_population_creates_and_owns_the_runtime_registry(device):
    population, _ = _population(device=device)
    assert isinstance(population.runtime_registry, AgentRuntimeRegistry)
    assert population.runtime_registry.num_agents == 4
    assert population.runtime_registry.device.type == device.type
    assert not any(isinstance(v, torch.Tensor) and "baseline" in k for k, v in vars(population).items())


def test_select_actions_is_one_batch_of_valid_actions(device):
    population, env = _population(n=16, device=device)
    actions = population.select_actions(env.reset())
    assert actions.shape == (16,)
    assert actions.device.type == device.type
    assert int(actions.min()) >= 0 and int(actions.max()) < env.num_actions


def test_greedy_actions_follow_the_q_network():
    population, env = _population(epsilon_start=0.0, epsilon_end=0.0)
    obs = env.reset()
    assert torch.equal(population.select_actions(obs), population.q_net(obs).argmax(dim=1))


def test_rewards_use_the_registry_baseline(device):
    population, env = _population(n=2, device=device)
    population.runtime_registry.set_baselines(torch.tensor([10.0, 30.0]))
    env.set_depletion([0.0] * 4)
    env.reset()
    env.max_steps = 1
    step = env.step(torch.zeros(2, dtype=torch.long, device=device))
    assert population.rewards_for(step).cpu().tolist() == [-9.0, -29.0]


def test_learning_changes_the_q_network_once_warmed_up():
    population, env = _population(n=8, learning_starts=16, batch_size=16)
    env.set_depletion([0.01, 0.0, 0.0, 0.0])
    before = [p.clone() for p in population.q_net.parameters()]
    obs = env.reset()
    for _ in range(5):
        actions = population.select_actions(obs)
        step = env.step(actions)
        population.observe(obs, actions, population.rewards_for(step), step)
        obs = step.observations
    assert population.replay.size == 40
    assert population.learn_steps == 4  # from the 2nd step, 16 transitions are stored
    assert any(not torch.equal(a, b) for a, b in zip(before, population.q_net.parameters(), strict=True))


def test_only_agents_that_acted_are_stored():
    population, env = _population(n=4)
    env.reset()
    env.done[2:] = True
    obs = env.observe()
    actions = population.select_actions(obs)
    step = env.step(actions)
    population.observe(obs, actions, population.rewards_for(step), step)
    assert population.replay.size == 2


def test_epsilon_decays_per_episode_and_is_published_to_the_registry():
    population, _ = _population(epsilon_start=1.0, epsilon_end=0.2, epsilon_decay=0.5)
    population.end_episode()
    assert population.runtime_registry.snapshot().epsilon == (0.5,) * 4
    population.end_episode()
    population.end_episode()
    assert population.epsilon == 0.2
