"""Learner checkpoints: bytes per checkpoint, and what taking and storing one costs against an episode.

For each agent count: train ``--episodes`` episodes on CPU (the default config, so the replay buffer fills at
its real pace), then measure

- the checkpoint's size after those episodes, and with the replay buffer filled to capacity (random
  transitions added after training: the size every long run reaches);
- ``capture`` (``torch.save`` of the trainer's state, in the training thread) against the mean episode
  duration of the same run;
- ``write_episode`` with the checkpoint against the same episode without it, into one SQLite file (the
  writer thread's extra work), median of ``--repeat`` writes each.

Run: `.venv/bin/python benchmarks/bench_checkpoint.py [--agents 8 64 1024] [--episodes 10]`.
"""

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from townlet.config import load_config, with_overrides
from townlet.persistence.store import TelemetryStore
from townlet.telemetry.payloads import build_agent_columns
from townlet.training.checkpoint import capture
from townlet.training.loop import Trainer
from townlet.training.session import episode_meta


def fill_replay(trainer: Trainer) -> None:
    replay = trainer.population.replay
    missing = replay.capacity - replay.size
    obs = torch.rand(missing, replay.obs.shape[1])
    replay.add(obs, torch.randint(0, 5, (missing,)), torch.randn(missing), obs, torch.zeros(missing, dtype=torch.bool))


def median_ms(call, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def bench(agents: int, episodes: int, repeat: int, directory: Path) -> None:
    config = with_overrides(load_config(), "training", agents=agents, episodes=episodes, device="cpu", seed=0)
    trainer = Trainer(config)
    reports = list(trainer.run(episodes))
    episode_ms = statistics.fmean(r.duration_s for r in reports) * 1000
    young = capture(trainer, episodes)
    capture_ms = median_ms(lambda: capture(trainer, episodes), repeat)
    fill_replay(trainer)
    full = capture(trainer, episodes)

    last = reports[-1]
    agents_rows = build_agent_columns(last.snapshot, last.episode)
    db = directory / f"bench-{agents}.db"
    with TelemetryStore.open(str(db), write=True) as store:
        run = store.create_run(run_uuid=f"{agents:032d}", seed=0, device="cpu", num_agents=agents, config={})
        counter = iter(range(1, 10**9))

        def write(checkpoint):
            meta = replace(episode_meta(last), episode=next(counter))
            if checkpoint is not None:
                checkpoint = replace(checkpoint, episode=meta.episode)
            store.write_episode(run, meta, agents_rows, checkpoint=checkpoint, keep_checkpoints=2)

        plain_ms = median_ms(lambda: write(None), repeat)
        with_ms = median_ms(lambda: write(full), repeat)
    print(
        f"{agents:>5} agents | checkpoint {len(young.blob) / 1e6:5.2f} MB after {episodes} episodes "
        f"({trainer.population.replay.capacity} capacity), {len(full.blob) / 1e6:5.2f} MB full | "
        f"capture {capture_ms:6.1f} ms = {capture_ms / episode_ms:5.3f}x an episode ({episode_ms:6.1f} ms) | "
        f"write episode {plain_ms:6.1f} ms, with checkpoint {with_ms:6.1f} ms ({with_ms / plain_ms:5.2f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[8, 64, 1024])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        for agents in args.agents:
            bench(agents, args.episodes, args.repeat, Path(directory))


if __name__ == "__main__":
    main()
