"""Training episodes/s by torch intra-op thread count, quiet and beside two busy processes.

For each agent count, trains for a few seconds in a fresh process per setting (torch's thread pool is set
once per process): torch's own default (all cores, ``training.threads = 0``), 1 thread (townlet's default),
and 2 threads. Then the same again while two CPU-bound processes run beside it, as on a
shared machine. Prints episodes/s and the ratio to torch's default measured in the same run.

Run: `.venv/bin/python benchmarks/bench_threads.py [--agents 8 64 1024] [--seconds 8]`.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager

#: One measurement in a fresh process: train for about `seconds`, report episodes/s of the step loop.
CHILD = r"""
import json, sys, time
import torch
from townlet.config import load_config, with_overrides
from townlet.training.loop import Trainer

agents, threads, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
config = with_overrides(load_config(), "training", agents=agents, device="cpu", seed=0, episodes=1)
trainer = Trainer(with_overrides(config, "training", threads=0 if threads == "torch" else int(threads)))
trainer.run_episode(0)  # warm-up (and the replay buffer starts filling)
done, busy, started = 0, 0.0, time.perf_counter()
while time.perf_counter() - started < seconds:
    busy += trainer.run_episode(done + 1).duration_s
    done += 1
print(json.dumps({"episodes": done, "loop_s": busy, "threads": torch.get_num_threads()}))
"""


def measure(agents: int, threads: str, seconds: float) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(agents), threads, str(seconds)],
        capture_output=True, text=True, check=True,
        env={k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
    ).stdout  # fmt: skip
    result = json.loads(out.strip().splitlines()[-1])
    result["eps"] = result["episodes"] / result["loop_s"]
    return result


@contextmanager
def busy_neighbours(count: int):
    """``count`` CPU-bound processes beside the measurement (another user's job on a shared machine)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(0.5)
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[8, 64, 1024])
    parser.add_argument("--seconds", type=float, default=8.0, help="training time per measurement")
    args = parser.parse_args()
    print(f"cores={os.cpu_count()}; episodes/s of the step loop; ratio against torch's default in the same run")
    print(f"{'load':<8} {'agents':>6} {'setting':<10} {'threads':>7} {'episodes/s':>11} {'ratio':>6}")
    for load, neighbours in (("quiet", 0), ("2 busy", 2)):
        with busy_neighbours(neighbours):
            for agents in args.agents:
                baseline = None
                for setting, threads in (("torch", "torch"), ("1 thread", "1"), ("2 threads", "2")):
                    result = measure(agents, threads, args.seconds)
                    baseline = baseline or result["eps"]
                    print(
                        f"{load:<8} {agents:>6} {setting:<10} {result['threads']:>7} {result['eps']:>11.2f} "
                        f"{result['eps'] / baseline:>6.2f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
