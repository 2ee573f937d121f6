"""Agent-steps per second of environment step + action selection, for 1, 64 and 1024 agents.

Prints the per-step cost ratio of 1024 agents against 1 agent, measured in the same run: batched work
should keep it far below 1024x. Run: `.venv/bin/python benchmarks/bench_env.py [--steps N] [--device cpu]`.
"""

import argparse
import time

import torch

from townlet.config import PopulationConfig
from townlet.environment.grid import VectorizedGridEnv
from townlet.population.vectorized import VectorizedPopulation


def seconds_per_step(num_agents: int, steps: int, device: torch.device) -> float:
    env = VectorizedGridEnv(num_agents, max_steps=10**9, device=device)
    env.set_depletion([0.0, 0.0, 0.0, 0.0])  # nobody dies: every step does the same work
    population = VectorizedPopulation(
        num_agents, env.obs_dim, env.num_actions, PopulationConfig(), device, grid_size=env.grid_size
    )
    population.epsilon = 0.1
    obs = env.reset()
    for _ in range(20):  # warm-up
        obs = env.step(population.select_actions(obs)).observations
    best = float("inf")
    for _ in range(3):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(steps):
            obs = env.step(population.select_actions(obs)).observations
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - started) / steps)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    per_step = {}
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} steps={args.steps}")
    print(f"{'agents':>7} {'us/step':>10} {'agent-steps/s':>15}")
    for n in (1, 64, 1024):
        per_step[n] = seconds_per_step(n, args.steps, device)
        print(f"{n:>7} {per_step[n] * 1e6:>10.1f} {n / per_step[n]:>15,.0f}")
    print(f"per-step cost ratio 1024 vs 1 agent: {per_step[1024] / per_step[1]:.2f}x (1024x would mean no batching)")


if __name__ == "__main__":
    main()
