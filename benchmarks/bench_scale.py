"""Scale: every read command and dashboard endpoint on runs of 1 M, 10 M (and 100 M) agent rows, as fresh
processes, against a bare stdlib-``sqlite3`` (or bare ``pyarrow``) script computing the same answer.

Builds, once per size and database revision (cached in the temp dir), one run of ``--agents`` agents x N
episodes written through ``TelemetryStore.write_episode`` (so its rollups too) with realistic, varying data:
five curriculum stages whose baselines fall (100, 80, 66.7, 57.1, 50), epsilon decaying 0.999 per episode,
survival drifting per agent and improving over the run, rewards ``survival - baseline`` in float32, mixed
death causes, visits and entropies. ``--runs-db N`` also builds a database of N one-episode runs for ``runs``.

For each size it prints, per case: the townlet process's wall time and peak RSS, the bare script's time, the
ratio, and at the end the growth of each case from the smallest size to the largest. The bare scripts are
what a user could write without townlet: the scan over ``agent_snapshots`` that answered before the rollups
(for the rollup-based answers), or the same query townlet runs. Dashboard endpoints are first requests to a
fresh ``serve`` (its cache empty). The machine is shared: read the ratios, not the seconds.

Run: `.venv/bin/python benchmarks/bench_scale.py [--sizes 1000,10000] [--agents 1024] [--skip-slow]`.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from townlet.persistence.revisions import HEAD_REVISION
from townlet.persistence.store import EpisodeMeta, TelemetryStore
from townlet.telemetry.dto import CURRENT_DTO, DEATH_CAUSES

CLI = str(Path(sys.executable).with_name("townlet-telemetry"))
BASELINES = (100.0, 80.0, 200 / 3, 400 / 7, 50.0)
CAUSES = sorted(DEATH_CAUSES)

#: A child's peak RSS: run it from a fresh wrapper, whose children's peak is then that child's.
MEASURE = """
import resource, subprocess, sys, time
started = time.perf_counter()
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""

BARE = {
    "runs": "SELECT r.*, (SELECT count(*) FROM episodes e WHERE e.run_id = r.id), "
    "(SELECT max(episode) FROM episodes e WHERE e.run_id = r.id) FROM runs r ORDER BY r.id",
    "episodes": "SELECT e.episode, e.steps, e.curriculum_stage, e.duration_s, count(*), "
    "avg(CAST(a.survival_steps AS REAL)), min(a.survival_steps), max(a.survival_steps), avg(a.episode_reward), "
    "min(a.episode_reward), max(a.episode_reward), avg(a.baseline_survival_steps), avg(a.epsilon) "
    "FROM episodes e JOIN agent_snapshots a ON a.episode_pk = e.id WHERE e.run_id = 1 GROUP BY e.id ORDER BY e.episode",
    "last": "SELECT e.episode, count(*), avg(a.survival_steps), min(a.survival_steps), max(a.survival_steps) FROM "
    "(SELECT id, episode FROM episodes WHERE run_id = 1 ORDER BY episode DESC LIMIT 5) e "
    "JOIN agent_snapshots a ON a.episode_pk = e.id GROUP BY e.id ORDER BY e.episode",
    "points": "SELECT min(e.episode), max(e.episode), count(DISTINCT e.id), avg(a.survival_steps), "
    "min(a.survival_steps), max(a.survival_steps), avg(a.episode_reward) FROM episodes e JOIN agent_snapshots a "
    "ON a.episode_pk = e.id WHERE e.run_id = 1 GROUP BY ((e.episode - 1) * 1000) / {episodes} ORDER BY 1",
    "replay": "SELECT a.* FROM agent_snapshots a WHERE a.episode_pk = "
    "(SELECT id FROM episodes WHERE run_id = 1 AND episode = {middle}) ORDER BY a.agent_idx",
    "agent": "SELECT e.episode, a.curriculum_stage, a.baseline_survival_steps, a.survival_steps FROM episodes e "
    "JOIN agent_snapshots a ON a.episode_pk = e.id AND a.agent_idx IN (0, 1, 2, {agent}) WHERE e.run_id = 1 "
    "ORDER BY e.episode, a.agent_idx",
    "baselines": "SELECT e.episode, a.agent_idx, a.curriculum_stage, a.baseline_survival_steps, a.survival_steps, "
    "a.action_entropy FROM episodes e JOIN agent_snapshots a ON a.episode_pk = e.id WHERE e.run_id = 1 "
    "ORDER BY e.episode, a.agent_idx",
    "visits": "SELECT e.episode, a.agent_idx, a.visits_bed, a.visits_shower, a.visits_fridge, a.visits_job "
    "FROM episodes e JOIN agent_snapshots a ON a.episode_pk = e.id WHERE e.run_id = 1 ORDER BY e.episode, a.agent_idx",
    "rewards": "SELECT e.episode, a.agent_idx, a.survival_steps, a.baseline_survival_steps, a.episode_reward "
    "FROM episodes e JOIN agent_snapshots a ON a.episode_pk = e.id WHERE e.run_id = 1 ORDER BY e.episode, a.agent_idx",
}
#: The bare script: the query's rows fetched in batches (and dropped), as a user's script would read them.
BARE_SCRIPT = """
import sqlite3, sys
c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
cursor = c.execute(sys.argv[2])
while cursor.fetchmany(50000):
    pass
"""
BARE_PARQUET = """
import sqlite3, sys
import pyarrow as pa, pyarrow.parquet as pq
c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
cursor = c.execute("SELECT e.episode, a.* FROM episodes e JOIN agent_snapshots a ON a.episode_pk = e.id "
                   "WHERE e.run_id = 1 ORDER BY e.episode, a.agent_idx")
names = [d[0] for d in cursor.description]
writer = None
while rows := cursor.fetchmany(65536):
    table = pa.Table.from_pydict({n: list(col) for n, col in zip(names, zip(*rows))})
    writer = writer or pq.ParquetWriter(sys.argv[2], table.schema, compression="zstd")
    writer.write_table(table)
writer.close()
"""
BARE_COPY = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[2])
c.execute("ATTACH DATABASE ? AS src", ("file:" + sys.argv[1] + "?mode=ro",))
for table in ("runs", "episodes", "agent_snapshots", "checkpoints", "episode_rollups"):
    c.execute(f"CREATE TABLE {table} AS SELECT * FROM src.{table} WHERE 0")
with c:
    for table in ("runs", "episodes", "agent_snapshots", "checkpoints", "episode_rollups"):
        c.execute(f"INSERT INTO {table} SELECT * FROM src.{table}")
"""


def episode_columns(rng: np.random.Generator, agents: int, episode: int, episodes: int, drift: np.ndarray) -> dict:
    stage = 1 + min(4, (episode - 1) * 5 // episodes)
    baseline = BASELINES[stage - 1]
    progress = episode / episodes
    survival = np.clip(rng.normal(baseline * (0.7 + 0.6 * progress) + drift, 15), 1, 500).astype(np.int64)
    reward = (survival.astype(np.float32) - np.float32(baseline)).astype(np.float64)
    meters = rng.random((agents, 4))
    visits = rng.poisson((2.0, 1.0 + 2 * progress, 2.0, 3.0), (agents, 4))
    return {
        "agent_idx": range(agents),
        "survival_steps": survival.tolist(),
        "baseline_survival_steps": [float(np.float32(baseline))] * agents,
        "episode_reward": reward.tolist(),
        "epsilon": [max(0.05, 0.999**episode)] * agents,
        "curriculum_stage": [stage] * agents,
        "death_cause": [CAUSES[i] for i in rng.integers(0, len(CAUSES), agents)],
        "meter_energy": meters[:, 0].tolist(),
        "meter_hygiene": meters[:, 1].tolist(),
        "meter_satiation": meters[:, 2].tolist(),
        "meter_money": meters[:, 3].tolist(),
        "visits_bed": visits[:, 0].tolist(),
        "visits_shower": visits[:, 1].tolist(),
        "visits_fridge": visits[:, 2].tolist(),
        "visits_job": visits[:, 3].tolist(),
        "action_entropy": rng.uniform(0.2, 1.6, agents).tolist(),
    }


def build(path: Path, agents: int, episodes: int) -> float:
    """Write the run; returns the write rate (agent rows/s) over the last tenth of it."""
    rng = np.random.default_rng(0)
    drift = rng.normal(0, 10, agents)
    now = datetime.now(UTC)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    tail_start, tail_from = 0.0, episodes - max(1, episodes // 10)
    with TelemetryStore.open(str(partial), write=True) as store:
        run = store.create_run(run_uuid="c" * 32, seed=0, device="cpu", num_agents=agents, config={})
        started = time.perf_counter()
        for episode in range(1, episodes + 1):
            if episode == tail_from + 1:
                tail_start = time.perf_counter()
            columns = episode_columns(rng, agents, episode, episodes, drift)
            agents_checked = CURRENT_DTO.check_columns(columns, {"episode": episode})
            store.write_episode(run, EpisodeMeta(episode, 500, columns["curriculum_stage"][0], 0.1, now, now),
                                agents_checked)  # fmt: skip
            if episode % 1000 == 0:
                rate = episode * agents / (time.perf_counter() - started)
                print(f"  built {episode}/{episodes} episodes ({rate:,.0f} rows/s)", file=sys.stderr)
        tail_rate = (episodes - tail_from) * agents / (time.perf_counter() - tail_start)
        store.set_run_status(run, "finished")
    partial.rename(path)
    return tail_rate


def database(agents: int, episodes: int) -> tuple[Path, float | None]:
    db = Path(tempfile.gettempdir()) / f"townlet-bench-scale-{agents}x{episodes}-r{HEAD_REVISION}.db"
    rate = None
    if not db.exists():
        print(f"building {db} ({agents * episodes:,} agent rows) ...", file=sys.stderr)
        rate = build(db, agents, episodes)
    return db, rate


def many_runs(count: int) -> Path:
    db = Path(tempfile.gettempdir()) / f"townlet-bench-scale-{count}runs-r{HEAD_REVISION}.db"
    if db.exists():
        return db
    rng, now = np.random.default_rng(1), datetime.now(UTC)
    partial = db.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with TelemetryStore.open(str(partial), write=True) as store:
        for i in range(count):
            run = store.create_run(run_uuid=f"{i:032x}", seed=i, device="cpu", num_agents=2, config={"i": i})
            columns = episode_columns(rng, 2, 1, 1, np.zeros(2))
            store.write_episode(
                run, EpisodeMeta(1, 500, 1, 0.1, now, now), CURRENT_DTO.check_columns(columns, {"episode": 1})
            )
            store.set_run_status(run, "finished")
    partial.rename(db)
    return db


def measure(command: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (MiB) of one fresh process."""
    out = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, check=True)
    seconds, kib = out.stdout.split()
    return float(seconds), int(kib) // 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def endpoints(db: Path, episodes: int, agents: int, slow: bool) -> list[tuple[str, float]]:
    """First-request times of the dashboard's endpoints on a fresh ``serve`` (``slow``: also the reward audit,
    which reads every agent row)."""
    port = free_port()
    server = subprocess.Popen([CLI, "serve", "--db", str(db), "--port", str(port)], stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{base}/api/config", timeout=5).read()
                break
            except OSError:
                time.sleep(0.1)
        paths = [
            "/api/overview", "/api/runs/1?points=600", "/api/runs/1/sessions", "/api/runs/1/agents",
            f"/api/runs/1/episodes/{episodes // 2}", f"/api/runs/1/agents/{agents // 3}", "/api/runs/1/flags",
            "/api/runs/1/heatmap?columns=1000&rows=64",
        ]  # fmt: skip
        if slow:
            paths += ["/api/runs/1/rewards"]
        times = []
        for path in paths:
            started = time.perf_counter()
            urllib.request.urlopen(base + path, timeout=3600).read()
            times.append((path, time.perf_counter() - started))
        return times
    finally:
        server.terminate()
        server.wait()


def cases(db: Path, episodes: int, agents: int, scratch: Path, slow: bool) -> list[tuple[str, list[str], list[str]]]:
    py, flag = sys.executable, ["--db", str(db)]
    bare = lambda name: [py, "-c", BARE_SCRIPT, str(db), BARE[name].format(  # noqa: E731
        episodes=episodes, middle=episodes // 2, agent=agents // 3)]  # fmt: skip
    found = [
        ("runs", [CLI, "runs", "--json", *flag], bare("runs")),
        ("episodes --run 1 (whole run)", [CLI, "episodes", "--run", "1", "--json", *flag], bare("episodes")),
        ("episodes --last 5", [CLI, "episodes", "--run", "1", "--last", "5", "--json", *flag], bare("last")),
        ("episodes --points 1000", [CLI, "episodes", "--run", "1", "--points", "1000", "--json", *flag],
         bare("points")),
        ("replay --episode", [CLI, "replay", "--episode", str(episodes // 2), "--json", *flag], bare("replay")),
        ("audit baselines --agent", [CLI, "audit", "baselines", "--agent", str(agents // 3), "--json", *flag],
         bare("agent")),
    ]  # fmt: skip
    if slow:
        parquet, copy = scratch / "out.parquet", scratch / "copy.db"
        found += [
            ("audit baselines (whole run)", [CLI, "audit", "baselines", "--run", "1", *flag], bare("baselines")),
            ("audit visits (whole run)", [CLI, "audit", "visits", "--run", "1", *flag], bare("visits")),
            ("audit rewards (whole run)", [CLI, "audit", "rewards", "--run", "1", *flag], bare("rewards")),
            ("export --format parquet", [CLI, "export", "-f", "parquet", "--out", str(parquet), "--force", *flag],
             [py, "-c", BARE_PARQUET, str(db), str(parquet)]),
            ("db copy (new file)", ["sh", "-c", f'rm -f "{copy}" && exec "{CLI}" db copy "{db}" "{copy}"'],
             ["sh", "-c", f'rm -f "{copy}" && exec "{py}" -c \'{BARE_COPY}\' "{db}" "{copy}"']),
        ]  # fmt: skip
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="Episodes per run, comma-separated (x --agents).")
    parser.add_argument("--agents", type=int, default=1024)
    parser.add_argument(
        "--skip-slow", action="store_true", help="Skip what reads every agent row: whole-run audits, export, copy, "
        "the dashboard's reward audit."
    )  # fmt: skip
    parser.add_argument("--runs-db", type=int, default=10_000, help="Also time `runs` on this many runs (0: no).")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="townlet-bench-scale-"))
    growth: dict[str, list[float]] = {}
    try:
        for episodes in (int(s) for s in args.sizes.split(",")):
            db, rate = database(args.agents, episodes)
            rows = args.agents * episodes
            print(f"\n== {rows:,} agent rows ({args.agents} agents x {episodes:,} episodes), "
                  f"{db.stat().st_size / 2**30:.2f} GiB ==")  # fmt: skip
            if rate is not None:
                print(f"write rate over the last tenth of the build: {rate:,.0f} agent rows/s")
            print(f"{'case':32s} {'townlet':>9s} {'RSS':>7s} {'bare':>9s} {'ratio':>7s}")
            for name, ours, bare in cases(db, episodes, args.agents, scratch, not args.skip_slow):
                t_ours, rss = measure(ours)
                t_bare, _ = measure(bare)
                growth.setdefault(name, []).append(t_ours)
                print(f"{name:32s} {t_ours:8.3f}s {rss:5d}MB {t_bare:8.3f}s {t_ours / t_bare:6.2f}x", flush=True)
            for path, seconds in endpoints(db, episodes, args.agents, not args.skip_slow):
                key = "GET " + "/".join("N" if part.isdigit() else part for part in path.split("?")[0].split("/"))
                growth.setdefault(key, []).append(seconds)
                print(f"{'GET ' + path:44s} {seconds:8.3f}s (first request)", flush=True)
        if args.runs_db:
            db = many_runs(args.runs_db)
            seconds, rss = measure([CLI, "runs", "--json", "--db", str(db)])
            table, _ = measure([CLI, "runs", "--db", str(db)])
            print(f"\nruns --json on {args.runs_db:,} runs: {seconds:.3f}s ({rss} MB); the table: {table:.3f}s")
        print("\ngrowth from the smallest size to the largest (time ratio):")
        for name, times in growth.items():
            if len(times) > 1:
                print(f"  {name:44s} {times[-1] / times[0]:6.2f}x  ({' -> '.join(f'{t:.3f}s' for t in times)})")
        print(json.dumps({name: times for name, times in growth.items()}), file=sys.stderr)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        os.sync()


if __name__ == "__main__":
    main()
