"""compare at scale: N runs x agents x episodes (default 20 x 1024 x 10,000, 204.8 M agent rows), measured against
baselines taken in the same run:

- cold ``compare --json`` (a fresh process) against a bare stdlib-``sqlite3`` script reading the same per-episode
  rollups and window agent rows (what compare cannot do without), and against the same CLI's ``runs --json``
  (the cost of any cold command: Python, imports, opening the database);
- the compare page's first draw in headless Chromium (ms from navigation to the curves' canvas), against the
  same page's navigation to ``DOMContentLoaded``;
- the bootstrap alone: 50,000 resamples of 20 runs' IQM (rliable's default), against one ``numpy.sort`` of the
  same resample matrix.

The runs are built once (cached in the temp dir, named by size and revision) with the scale benchmark's
builder: ``TelemetryStore.write_episode`` of realistic varying data, so the rollups are the real ones; runs 1
to N/2 and N/2+1 to N differ in one config key, so there are two groups. The machine is shared: read the
ratios, not the seconds.

Run: `.venv/bin/python benchmarks/bench_compare.py [--runs 20] [--agents 1024] [--episodes 10000]`.
"""

import argparse
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_player import NAVIGATION_READY, browser, serve
from bench_scale import MEASURE, episode_columns

from townlet.analysis import statistics as stats
from townlet.persistence.revisions import HEAD_REVISION
from townlet.persistence.store import EpisodeMeta, TelemetryStore
from townlet.telemetry.dto import CURRENT_DTO

BARE = """
import sqlite3, sys
c = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
runs = [r[0] for r in c.execute("SELECT id FROM runs")]
last = min(r[0] for r in c.execute("SELECT max(episode) FROM episodes GROUP BY run_id"))
marks = ",".join("?" * len(runs))
rows = c.execute(f"SELECT e.run_id, e.episode, CAST(r.survival_steps_sum AS REAL) / r.agents FROM episodes e "
                 f"JOIN episode_rollups r ON r.episode_pk = e.id WHERE e.run_id IN ({marks}) AND e.episode <= ? "
                 "ORDER BY e.run_id, e.episode", (*runs, last)).fetchall()
agents = c.execute(f"SELECT e.run_id, e.curriculum_stage, a.agent_idx, avg(a.survival_steps - "
                   f"a.baseline_survival_steps) FROM episodes e JOIN agent_snapshots a ON a.episode_pk = e.id "
                   f"WHERE e.run_id IN ({marks}) AND e.episode BETWEEN ? AND ? GROUP BY 1, 2, 3",
                   (*runs, last - 19, last)).fetchall()
print(len(rows), len(agents))
"""

FIRST_DRAW = """
const done = arguments[arguments.length - 1];
const wait = () => document.querySelector('#compare-curves canvas') ? done(performance.now()) : setTimeout(wait, 5);
wait();
"""


def build(path: Path, runs: int, agents: int, episodes: int) -> None:
    rng = np.random.default_rng(0)
    now = datetime.now(UTC)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    started = time.perf_counter()
    with TelemetryStore.open(str(partial), write=True) as store:
        for i in range(runs):
            config = {"population": {"learning_rate": 0.001 if i < runs // 2 else 0.003}, "training": {"seed": i}}
            run = store.create_run(run_uuid=f"{i:032x}", seed=i, device="cpu", num_agents=agents, config=config,
                                   tags=["bench"])  # fmt: skip
            drift = rng.normal(0, 10, agents)
            for episode in range(1, episodes + 1):
                columns = episode_columns(rng, agents, episode, episodes, drift)
                checked = CURRENT_DTO.check_columns(columns, {"episode": episode})
                store.write_episode(run, EpisodeMeta(episode, 500, columns["curriculum_stage"][0], 0.1, now, now),
                                    checked)  # fmt: skip
            store.set_run_status(run, "finished")
            rows = (i + 1) * agents * episodes
            print(f"  built run {i + 1}/{runs} ({rows / (time.perf_counter() - started):,.0f} rows/s)", file=sys.stderr)
    partial.rename(path)


def cold(command: list[str], repeats: int) -> float:
    """Median wall seconds of a fresh process."""
    times = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, check=True)
        times.append(float(out.stdout.split()[0]))
    return statistics.median(times)


def page_first_draw(db: Path, repeats: int) -> tuple[float, float]:
    proc, base = serve(db)
    driver = browser()
    try:
        draws, loaded = [], []
        for _ in range(repeats):
            driver.get(f"{base}/compare")
            draws.append(driver.execute_async_script(FIRST_DRAW))
            loaded.append(driver.execute_script(NAVIGATION_READY))
        return statistics.median(draws), statistics.median(loaded)
    finally:
        driver.quit()
        proc.kill()
        proc.communicate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--agents", type=int, default=1024)
    parser.add_argument("--episodes", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    db = (
        Path(tempfile.gettempdir())
        / f"townlet-bench-compare-{args.runs}x{args.agents}x{args.episodes}-r{HEAD_REVISION}.db"
    )
    if not db.exists():
        print(f"building {db} ({args.runs * args.agents * args.episodes:,} agent rows) ...", file=sys.stderr)
        build(db, args.runs, args.agents, args.episodes)
    size = db.stat().st_size / 2**30
    print(f"{args.runs} runs x {args.agents} agents x {args.episodes} episodes "
          f"({args.runs * args.agents * args.episodes:,} agent rows, {size:.1f} GiB)")  # fmt: skip
    with sqlite3.connect(db) as c:  # warm the page cache for every measurement alike
        c.execute("SELECT count(*) FROM episode_rollups").fetchone()
    townlet = [sys.executable, "-m", "townlet_cli"]
    compare_s = cold([*townlet, "compare", "--json", "--db", str(db)], args.repeats)
    runs_s = cold([*townlet, "runs", "--json", "--db", str(db)], args.repeats)
    bare_s = cold([sys.executable, "-c", BARE, str(db)], args.repeats)
    print(f"compare --json, cold: {compare_s:.2f} s (goal <= 2 s); bare sqlite3 reads {bare_s:.2f} s "
          f"(ratio {compare_s / bare_s:.2f}); runs --json {runs_s:.2f} s (ratio {compare_s / runs_s:.2f})")  # fmt: skip
    draw_ms, loaded_ms = page_first_draw(db, args.repeats)
    print(f"compare page first draw: {draw_ms:.0f} ms (goal <= 1500 ms); DOMContentLoaded {loaded_ms:.0f} ms "
          f"(ratio {draw_ms / loaded_ms:.1f})")  # fmt: skip
    scores = np.random.default_rng(1).normal(150, 20, args.runs)
    started = time.perf_counter()
    stats.iqm_interval(scores, reps=stats.DEFAULT_REPS)
    boot_s = time.perf_counter() - started
    matrix = scores[stats.resample_indices(args.runs, stats.DEFAULT_REPS, 0)]
    started = time.perf_counter()
    np.sort(matrix, axis=1)
    sort_s = time.perf_counter() - started
    print(f"bootstrap, {stats.DEFAULT_REPS} resamples of {args.runs} runs' IQM: {boot_s * 1000:.0f} ms; "
          f"one numpy.sort of the resamples {sort_s * 1000:.0f} ms (ratio {boot_s / sort_s:.1f})")  # fmt: skip


if __name__ == "__main__":
    main()
