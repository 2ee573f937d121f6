"""``VectorizedPopulation``: one DQN acting and learning for every agent at once."""

import copy
from typing import Any

import torch
from torch import nn

from townlet.config import PopulationConfig
from townlet.environment.grid import StepResult
from townlet.environment.reward_strategy import RewardStrategy
from townlet.population.replay import ReplayBuffer
from townlet.population.runtime_registry import AgentRuntimeRegistry


class CellOneHot(nn.Module):
    """The network's view of the position: the two scaled coordinates of an observation (its first two columns)
    turned back into row and column indexes, each one-hot over ``grid_size``; the other columns pass through.

    Holds no parameters, so a checkpoint's tensors are those of the layers after it.
    """

    def __init__(self, grid_size: int) -> None:
        super().__init__()
        self.grid_size = grid_size

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        cells = (observations[:, :2] * (self.grid_size - 1)).round().long().clamp(0, self.grid_size - 1)
        one_hot = nn.functional.one_hot(cells, self.grid_size).flatten(1).to(observations.dtype)
        return torch.cat([one_hot, observations[:, 2:]], dim=1)


def q_network(obs_dim: int, num_actions: int, hidden: int, grid_size: int | None = None) -> nn.Sequential:
    """A small MLP mapping an observation to one Q-value per action; with ``grid_size``, the position enters
    one-hot (``CellOneHot``) instead of as two scaled numbers."""
    layers: list[nn.Module] = []
    if grid_size is not None:
        layers.append(CellOneHot(grid_size))
        obs_dim = obs_dim - 2 + 2 * grid_size
    return nn.Sequential(
        *layers,
        nn.Linear(obs_dim, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_actions),
    )


class VectorizedPopulation:
    """Owns the shared Q-network, its target copy, the replay buffer, epsilon, and ``runtime_registry``.

    Every call works on all agents in one batch; the registry is the only holder of per-agent runtime state
    (the reward baseline included), and rewards are computed from ``runtime_registry.get_baseline_tensor()``.
    """

    def __init__(
        self,
        num_agents: int,
        obs_dim: int,
        num_actions: int,
        config: PopulationConfig,
        device: torch.device,
        generator: torch.Generator | None = None,
        vital_columns: tuple[int, ...] = (),
        grid_size: int | None = None,
    ) -> None:
        self.num_agents = num_agents
        self.num_actions = num_actions
        self.config = config
        self.device = device
        self.generator = generator
        self.vital_columns = torch.tensor(vital_columns, dtype=torch.long, device=device)
        self.runtime_registry = AgentRuntimeRegistry(num_agents, device)
        self.reward_strategy = RewardStrategy(device)
        if config.position_encoding == "one_hot" and grid_size is None:
            raise ValueError("position_encoding 'one_hot' needs the grid_size the positions were scaled by")
        one_hot = grid_size if config.position_encoding == "one_hot" else None
        self.q_net = q_network(obs_dim, num_actions, config.hidden_size, one_hot).to(device)
        self.target_net = copy.deepcopy(self.q_net)
        self.optimizer = torch.optim.Adam(self.q_net.parameters(), lr=config.learning_rate)
        self.replay = ReplayBuffer(config.replay_capacity, obs_dim, device)
        self.epsilon = config.epsilon_start
        self.learn_steps = 0
        self.runtime_registry.set_epsilon(self.epsilon)

    def select_actions(self, observations: torch.Tensor) -> torch.Tensor:
        """Epsilon-greedy actions for every agent, one batched forward pass.

        ``last_explored`` (which agents took a random action) and ``last_q`` (the Q-values seen) stay on the
        device for a recording of the step.
        """
        with torch.no_grad():
            q = self.q_net(observations)
            greedy = q.argmax(dim=1)
        n = observations.shape[0]
        explore = torch.rand(n, device=self.device, generator=self.generator) < self.epsilon
        random_actions = torch.randint(0, self.num_actions, (n,), device=self.device, generator=self.generator)
        self.last_explored, self.last_q = explore, q
        return torch.where(explore, random_actions, greedy)

    def rewards_for(self, step: StepResult) -> torch.Tensor:
        """Rewards of one step, against the baseline the registry holds."""
        return self.reward_strategy.calculate_rewards(
            step.step_counts, step.dones, self.runtime_registry.get_baseline_tensor()
        )

    def observe(
        self, observations: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, step: StepResult
    ) -> None:
        """Store the transitions of agents that acted this step, then take one learning step once warmed up."""
        acted = step.alive_before
        terminal = self.terminal(step)
        self.replay.add(
            observations[acted],
            actions[acted],
            self.learning_rewards(rewards, observations, step)[acted],
            step.observations[acted],
            terminal[acted],
        )
        if self.replay.size < max(self.config.learning_starts, self.config.batch_size):
            return
        self._learn()

    def terminal(self, step: StepResult) -> torch.Tensor:
        """Where the learner's value ends: at a death, and at the timeout unless ``bootstrap_timeouts`` (the
        agents cannot see the step count, so to them a timeout is an arbitrary cut, not a state's outcome)."""
        if self.config.bootstrap_timeouts:
            return step.dones & (step.death_cause >= 0)
        return step.dones

    def learning_rewards(self, rewards: torch.Tensor, observations: torch.Tensor, step: StepResult) -> torch.Tensor:
        """What the learner learns from: ``terminal_weight`` x the telemetry reward, ``alive_reward`` for each
        step after which the agent still lives (a dead agent's total is then its survival, as steps), both
        scaled by ``reward_scale``, plus the potential-based shaping."""
        c = self.config
        died = step.dones & (step.death_cause >= 0)
        lived = (step.alive_before & ~died).to(torch.float32)
        return c.reward_scale * (c.terminal_weight * rewards + c.alive_reward * lived) + self._shaping(
            observations, step, self.terminal(step)
        )

    def _shaping(self, observations: torch.Tensor, step: StepResult, terminal: torch.Tensor) -> torch.Tensor:
        """Potential-based shaping ``w * (gamma * phi(s') - phi(s))``, phi = the lowest vital meter.

        Shaping of this form leaves the optimal policy unchanged (Ng, Harada & Russell, 1999); it only gives
        the learner a denser signal than the terminal survival-relative reward. Terminal states (``terminal``)
        have phi = 0; a bootstrapped timeout keeps its phi, or reaching it would cost the whole potential.
        It is the learner's private business: telemetry reports the ``RewardStrategy`` reward alone.
        """
        if self.config.shaping_weight == 0.0 or self.vital_columns.numel() == 0:
            return torch.zeros(observations.shape[0], device=self.device)
        phi = observations[:, self.vital_columns].min(dim=1).values
        phi_next = step.observations[:, self.vital_columns].min(dim=1).values * (~terminal)
        return self.config.shaping_weight * (self.config.gamma * phi_next - phi)

    def _learn(self) -> None:
        obs, actions, rewards, next_obs, dones = self.replay.sample(self.config.batch_size, self.generator)
        target = self.targets(rewards, next_obs, dones)
        q = self.q_net(obs).gather(1, actions.unsqueeze(1)).squeeze(1)
        loss = nn.functional.smooth_l1_loss(q, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.learn_steps += 1
        if self.learn_steps % self.config.target_sync_steps == 0:
            self.target_net.load_state_dict(self.q_net.state_dict())

    def targets(self, rewards: torch.Tensor, next_obs: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
        """One-step TD targets: with ``double_dqn`` the online network picks the next action and the target
        network values it (van Hasselt et al., 2016), else the target network's own maximum."""
        with torch.no_grad():
            if self.config.double_dqn:
                next_actions = self.q_net(next_obs).argmax(dim=1, keepdim=True)
                next_q = self.target_net(next_obs).gather(1, next_actions).squeeze(1)
            else:
                next_q = self.target_net(next_obs).max(dim=1).values
            return rewards + self.config.gamma * (1.0 - dones) * next_q

    def state_dict(self) -> dict[str, Any]:
        """The whole learner: both networks, the optimiser, epsilon, the learning-step count, the replay buffer
        and the registry (a checkpoint; ``load_state_dict`` continues exactly where this left off)."""
        return {
            "q_net": self.q_net.state_dict(),
            "target_net": self.target_net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epsilon": self.epsilon,
            "learn_steps": self.learn_steps,
            "replay": self.replay.state_dict(),
            "registry": self.runtime_registry.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.q_net.load_state_dict(state["q_net"])
        self.target_net.load_state_dict(state["target_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epsilon = float(state["epsilon"])
        self.learn_steps = int(state["learn_steps"])
        self.replay.load_state_dict(state["replay"])
        self.runtime_registry.load_state_dict(state["registry"])

    def end_episode(self) -> None:
        """Decay epsilon (multiplicatively, floored) and publish it to the registry."""
        self.epsilon = max(self.config.epsilon_end, self.epsilon * self.config.epsilon_decay)
        self.runtime_registry.set_epsilon(self.epsilon)

    def begin_stage(self) -> None:
        """A curriculum stage change: epsilon rises back to ``stage_epsilon`` (when higher), so the population
        explores the world's new rules instead of repeating the last stage's habits."""
        self.epsilon = max(self.epsilon, self.config.stage_epsilon)
        self.runtime_registry.set_epsilon(self.epsilon)
