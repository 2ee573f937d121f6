"""Read path: cold ``townlet-telemetry`` processes vs a bare python ``sqlite3`` script, same database, same run.

Builds (once, cached under the temp dir by size) a database of ``--agents`` x ``--episodes`` agent rows
written by ``TelemetryStore`` (default 1024 x 10 000 = about 10 million rows), then times, each in a fresh
process with the same interpreter:

- ``replay --episode E --json`` against a script that runs the same indexed query (the episode's agents by
  primary key) and prints the rows as JSON;
- ``audit baselines --agent I --json`` against a script that runs the same indexed join (one agent across the
  run's episodes) and prints it;
- the table forms of both (rich), for the record;
- ``export --format csv|jsonl`` of the whole run: rows per second.

Prints best-of-``--repeat`` wall times and the ratios. Target: both ratios <= 3x.

Run: `.venv/bin/python benchmarks/bench_read.py [--agents 1024] [--episodes 10000] [--repeat 7]`.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from townlet.environment.world import CAUSE_TIMEOUT, METERS
from townlet.persistence.revisions import HEAD_REVISION
from townlet.persistence.store import EpisodeMeta, TelemetryStore
from townlet.population.runtime_registry import AgentRuntimeRegistry
from townlet.telemetry.payloads import build_agent_columns

CLI = str(Path(sys.executable).with_name("townlet-telemetry"))

BARE_REPLAY = """
import json, sqlite3, sys
c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
rows = c.execute("SELECT a.* FROM agent_snapshots a WHERE a.episode_pk = "
                 "(SELECT id FROM episodes WHERE run_id = 1 AND episode = ?) ORDER BY a.agent_idx",
                 (int(sys.argv[2]),)).fetchall()
print(json.dumps(rows))
"""

BARE_AUDIT = """
import json, sqlite3, sys
c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
rows = c.execute("SELECT e.episode, a.curriculum_stage, a.baseline_survival_steps, a.survival_steps "
                 "FROM episodes e JOIN agent_snapshots a ON a.episode_pk = e.id AND a.agent_idx = ? "
                 "WHERE e.run_id = 1 ORDER BY e.episode", (int(sys.argv[2]),)).fetchall()
print(json.dumps(rows))
"""


def build(path: Path, agents: int, episodes: int) -> None:
    registry = AgentRuntimeRegistry(agents)
    registry.set_baselines(100.0)
    registry.set_epsilon(0.3)
    registry.record_step(
        torch.randint(1, 200, (agents,)), torch.randn(agents) * 50, torch.ones(agents, dtype=torch.bool),
        torch.full((agents,), CAUSE_TIMEOUT), torch.rand(agents, len(METERS)),
    )  # fmt: skip
    payloads = build_agent_columns(registry.snapshot(), 1)
    now = datetime.now(UTC)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with TelemetryStore.open(str(partial), write=True) as store:
        run = store.create_run(run_uuid="b" * 32, seed=0, device="cpu", num_agents=agents, config={})
        started = time.perf_counter()
        for episode in range(1, episodes + 1):
            store.write_episode(run, EpisodeMeta(episode, 200, 1, 0.1, now, now), payloads)
            if episode % 1000 == 0:
                rate = episode * agents / (time.perf_counter() - started)
                print(f"  built {episode}/{episodes} episodes ({rate:,.0f} rows/s)", file=sys.stderr)
        store.set_run_status(run, "finished")
    partial.rename(path)


def bench_database(agents: int, episodes: int) -> Path:
    """The benchmark database of this size, cached in the temp dir (built the first time: ~40 s for 10 M rows);
    one per database revision, so a cache an older townlet built is never read by a newer one."""
    db = Path(tempfile.gettempdir()) / f"townlet-bench-read-{agents}x{episodes}-r{HEAD_REVISION}.db"
    if not db.exists():
        print(f"building {db} ({agents * episodes:,} agent rows) ...", file=sys.stderr)
        build(db, agents, episodes)
    return db


def cold(command: list[str], repeat: int) -> float:
    """Best wall time of ``repeat`` fresh processes (stdout to a pipe, read fully)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, stdout=subprocess.PIPE, check=True)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1024)
    parser.add_argument("--episodes", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--skip-export", action="store_true", help="Skip the (long) full-run export timing.")
    args = parser.parse_args()
    db = bench_database(args.agents, args.episodes)
    print(f"database: {db} ({db.stat().st_size / 2**20:,.0f} MiB, {args.agents * args.episodes:,} agent rows)")
    episode, agent = str(args.episodes // 2), str(args.agents // 3)
    py = sys.executable
    cases = [
        ("replay --episode --json", [CLI, "replay", "--episode", episode, "--json", "--db", str(db)],
         [py, "-c", BARE_REPLAY, str(db), episode]),
        ("audit baselines --agent --json", [CLI, "audit", "baselines", "--agent", agent, "--json", "--db", str(db)],
         [py, "-c", BARE_AUDIT, str(db), agent]),
        ("replay --episode (table)", [CLI, "replay", "--episode", episode, "--db", str(db)],
         [py, "-c", BARE_REPLAY, str(db), episode]),
        ("audit baselines --agent (table)", [CLI, "audit", "baselines", "--agent", agent, "--db", str(db)],
         [py, "-c", BARE_AUDIT, str(db), agent]),
    ]  # fmt: skip
    startup = cold([py, "-c", "pass"], args.repeat)
    print(f"bare interpreter start-up: {startup * 1e3:.1f} ms")
    for name, ours, bare in cases:
        t_ours, t_bare = cold(ours, args.repeat), cold(bare, args.repeat)
        print(f"{name:34s} townlet {t_ours * 1e3:7.1f} ms   bare sqlite3 {t_bare * 1e3:7.1f} ms   "
              f"ratio {t_ours / t_bare:4.2f}x (target <= 3x)")  # fmt: skip
    if args.skip_export:
        return
    rows = args.agents * args.episodes
    for fmt in ("csv", "jsonl"):
        out = db.with_suffix(f".{fmt}")
        started = time.perf_counter()
        subprocess.run([CLI, "export", "--format", fmt, "--out", str(out), "--force", "--db", str(db)], check=True,
                       stderr=subprocess.DEVNULL)  # fmt: skip
        elapsed = time.perf_counter() - started
        print(f"export --format {fmt:5s} {rows:,} rows in {elapsed:.1f} s: {rows / elapsed:,.0f} rows/s "
              f"({out.stat().st_size / 2**20:,.0f} MiB)")  # fmt: skip
        out.unlink()


if __name__ == "__main__":
    main()
