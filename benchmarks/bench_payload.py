"""Snapshot -> envelope -> bytes for 1024 agents, against one bare ``.tolist()`` pass over the same fields.

Both are measured in the same run; the ratio is what we track (target <= 5x).
Run: `.venv/bin/python benchmarks/bench_payload.py [--agents 1024] [--repeat 200]`.
"""

import argparse
import time
from collections.abc import Callable

import torch

from townlet.environment.world import ACTIONS, AFFORDANCES, CAUSE_TIMEOUT, METERS
from townlet.population.runtime_registry import AgentRuntimeRegistry
from townlet.telemetry.payloads import encode, episode_envelope


def best_of(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def filled_registry(n: int) -> AgentRuntimeRegistry:
    registry = AgentRuntimeRegistry(n)
    registry.set_baselines(torch.rand(n) * 100)
    registry.set_epsilon(0.3)
    registry.set_curriculum_stage(2)
    registry.record_step(
        torch.randint(1, 200, (n,)),
        torch.randn(n) * 50,
        torch.ones(n, dtype=torch.bool),
        torch.full((n,), CAUSE_TIMEOUT),
        torch.rand(n, len(METERS)),
    )
    for _ in range(50):  # an episode's worth of actions and affordance visits
        actions = torch.randint(0, len(ACTIONS), (n,))
        registry.record_actions(actions, torch.ones(n, dtype=torch.bool), torch.randint(-1, len(AFFORDANCES), (n,)))
    return registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    registry = filled_registry(args.agents)
    fields = [
        registry._baseline,
        registry._survival_steps,
        registry._stage,
        registry._epsilon,
        registry._episode_reward,
        registry._death_cause,
        registry._meters,
        registry._visits,
    ]

    def bare() -> object:  # every field's one .tolist(), the entropy derived as the snapshot does
        return [t.tolist() for t in fields] + [registry.action_entropy().tolist()]

    def full() -> bytes:
        return encode(episode_envelope("run", 1, registry.snapshot()))

    t_bare, t_full = best_of(bare, args.repeat), best_of(full, args.repeat)
    size = len(full())
    print(f"agents={args.agents} envelope={size:,} bytes")
    print(f"bare .tolist() pass:        {t_bare * 1e6:9.1f} us")
    print(f"snapshot->envelope->bytes:  {t_full * 1e6:9.1f} us")
    print(f"ratio: {t_full / t_bare:.1f}x (target <= 5x)")


if __name__ == "__main__":
    main()
