"""What recording costs, measured in one run: sessions with ``[recording]`` at its defaults and with it off.

For each agent count: the step-loop time ratio on/off (whole sessions, best of --repeat, alternating; and the
same run paired episode by episode in one process, with the writer thread's encoding added), the database size
ratio, bytes per recorded agent-step and per recorded episode; then ``replay --steps --json`` of one agent of
the last recorded episode, cold (a new process), against a bare ``sqlite3`` query of the same blob (also a
new process). Targets: time ratio <= 1.02, size ratio <= 1.25 (1024 agents), <= 4 bytes per agent-step.

Run: `.venv/bin/python benchmarks/bench_recording.py [--agents 8 64 1024] [--episodes 30] [--repeat 3]`.
"""

import argparse
import dataclasses
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from townlet.config import RecordingConfig, load_config, with_overrides
from townlet.telemetry.recording_codec import encode_agent
from townlet.training.loop import Trainer
from townlet.training.session import TrainingSession


def session(config, db: Path) -> float:
    result = TrainingSession(config, db=str(db)).run()
    return sum(report.duration_s for report in result.reports)


def paired(on_config, off_config, episodes: int) -> tuple[float, float, float]:
    """The same run with recording on and off in one process, episode by episode alternately (the machine's
    drift hits both alike); returns the step-loop seconds on and off, and the writer-side encoding seconds."""
    on, off = Trainer(on_config), Trainer(off_config)
    on.recording_plan.last_planned = off.recording_plan.last_planned = episodes
    t_on = t_off = t_encode = 0.0
    for episode in range(1, episodes + 1):
        report = on.run_episode(episode)
        t_on += report.duration_s
        t_off += off.run_episode(episode).duration_s
        if report.recording is not None:
            started = time.perf_counter()
            initial = report.recording.header.initial_meters
            for agent in report.recording.agents:
                encode_agent(agent, initial)
            t_encode += time.perf_counter() - started
    return t_on, t_off, t_encode


def cold(argv: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, nargs="+", default=[8, 64, 1024])
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for agents in args.agents:
            on_config = with_overrides(load_config(), "training", agents=agents, episodes=args.episodes, device="cpu")
            off_config = dataclasses.replace(on_config, recording=RecordingConfig(enabled=False))
            on, off = [], []
            for i in range(args.repeat):
                off.append(session(off_config, Path(tmp) / f"off{agents}-{i}.db"))
                on.append(session(on_config, Path(tmp) / f"on{agents}-{i}.db"))
            db_on, db_off = Path(tmp) / f"on{agents}-0.db", Path(tmp) / f"off{agents}-0.db"
            with sqlite3.connect(db_on) as c:
                episodes, agent_steps, size = c.execute(
                    "SELECT count(*), sum(agent_steps), sum(size_bytes) FROM recordings"
                ).fetchone()
                last, agent = c.execute(
                    "SELECT e.episode, max(a.agent_idx) FROM recordings r JOIN episodes e ON e.id = r.episode_pk "
                    "JOIN recording_agents a ON a.episode_pk = r.episode_pk GROUP BY e.episode ORDER BY e.episode DESC"
                ).fetchone()
            print(f"{agents} agents x {args.episodes} episodes, best of {args.repeat}, torch threads=1")
            print(f"  step loop, whole sessions: recording off {min(off):.3f} s, on {min(on):.3f} s, ratio "
                  f"{min(on) / min(off):.3f}")  # fmt: skip
            t_on, t_off, t_encode = paired(on_config, off_config, args.episodes)
            print(f"  step loop, paired episode by episode in one process: off {t_off:.3f} s, on {t_on:.3f} s, ratio "
                  f"{t_on / t_off:.3f}; the writer's encoding {t_encode * 1000:.0f} ms in all "
                  f"(ratio with it {(t_on + t_encode) / t_off:.3f})")  # fmt: skip
            print(f"  database: off {os.path.getsize(db_off):,} B, on {os.path.getsize(db_on):,} B, ratio "
                  f"{os.path.getsize(db_on) / os.path.getsize(db_off):.3f}")  # fmt: skip
            print(f"  {episodes} recorded episodes, {size:,} B: {size / agent_steps:.2f} B per agent-step, "
                  f"{size / episodes:,.0f} B per recorded episode")  # fmt: skip
            steps = [sys.executable, "-m", "townlet_cli", "replay", "-e", str(last), "--steps", "--agent",
                     str(agent), "--json", "--db", str(db_on)]  # fmt: skip
            bare = [sys.executable, "-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("
                    "'SELECT blob FROM recording_agents WHERE agent_idx = ? ORDER BY episode_pk DESC LIMIT 1', "
                    "(int(sys.argv[2]),)).fetchone()", str(db_on), str(agent)]  # fmt: skip
            t_steps, t_bare = cold(steps, args.repeat), cold(bare, args.repeat)
            print(f"  replay --steps --json (agent {agent}, episode {last}), cold: {t_steps * 1000:.0f} ms; bare "
                  f"blob query, cold: {t_bare * 1000:.0f} ms; ratio {t_steps / t_bare:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
