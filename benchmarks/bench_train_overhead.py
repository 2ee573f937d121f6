"""The same training run with telemetry off, and with persistence (recordings at their defaults) + live stream
(one client reading) on.

Prints the ratio of step-loop time (sum of episode durations), measured in the same run, alternating
off/on runs and keeping the best of each. Target <= 1.02.

Run: `.venv/bin/python benchmarks/bench_train_overhead.py [--agents 64] [--episodes 20] [--repeat 3]`.
"""

import argparse
import dataclasses
import tempfile
import threading
import time
from pathlib import Path

import torch
from websockets.sync.client import connect

from townlet.config import RecordingConfig, load_config, with_overrides
from townlet.training.loop import Trainer
from townlet.training.session import TrainingSession


def loop_time_off(config) -> tuple[float, float]:
    trainer = Trainer(dataclasses.replace(config, recording=RecordingConfig(enabled=False)))  # telemetry off
    started = time.perf_counter()
    loop = sum(report.duration_s for report in trainer.run(config.training.episodes))
    return loop, time.perf_counter() - started


def loop_time_on(config, db: Path) -> tuple[float, float, float]:
    urls: list[str] = []
    session = TrainingSession(config, db=str(db), live=("127.0.0.1", 0), on_live_start=urls.append)
    received = []

    def client() -> None:
        with connect(urls[0], compression=None, max_size=None) as ws:
            for message in ws:
                received.append(len(message))

    reader = threading.Thread(target=client, daemon=True)
    reader.start()
    started = time.perf_counter()
    result = session.run()
    wall = time.perf_counter() - started
    reader.join(timeout=10)
    return sum(report.duration_s for report in result.reports), wall, result.writer_blocked_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = with_overrides(load_config(), "training", agents=args.agents, episodes=args.episodes, device="cpu")
    off, on, off_wall, on_wall, blocked = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            t_off, w_off = loop_time_off(config)
            off.append(t_off)
            off_wall.append(w_off)
            t_on, w_on, t_blocked = loop_time_on(config, Path(tmp) / f"run{i}.db")
            on.append(t_on)
            on_wall.append(w_on)
            blocked.append(t_blocked)
    print(f"{args.agents} agents x {args.episodes} episodes, best of {args.repeat}, torch threads=1")
    print(f"telemetry off:              {min(off):.3f} s step loop")
    print(f"persistence + live (1 client): {min(on):.3f} s step loop, writer blocked training {max(blocked):.3f} s")
    print(f"ratio on/off: {min(on) / min(off):.3f} (target <= 1.02)")
    print(f"whole run incl. publishing and the final flush: off {min(off_wall):.3f} s, on {min(on_wall):.3f} s, "
          f"ratio {min(on_wall) / min(off_wall):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
