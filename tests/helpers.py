"""Small builders shared by tests: filled registries and free loopback ports."""

import socket

import torch

from townlet.environment.world import CAUSE_TIMEOUT, METERS
from townlet.population.runtime_registry import AgentRuntimeRegistry


def finished_registry(n: int = 4, baselines: list[float] | None = None) -> AgentRuntimeRegistry:
    """A registry as it looks at the end of an episode: everyone timed out at step 200."""
    registry = AgentRuntimeRegistry(n)
    registry.set_baselines(torch.tensor(baselines) if baselines is not None else 100.0)
    registry.set_epsilon(0.25)
    registry.set_curriculum_stage(2)
    steps = torch.arange(1, n + 1) * 10
    registry.record_step(
        steps,
        steps.float() - registry.get_baseline_tensor(),
        torch.ones(n, dtype=torch.bool),
        torch.full((n,), CAUSE_TIMEOUT),
        torch.linspace(0, 1, n * len(METERS)).reshape(n, len(METERS)),
    )
    return registry


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
