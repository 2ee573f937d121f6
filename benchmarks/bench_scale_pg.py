"""Scale on PostgreSQL: ``bench_scale``'s runs copied into a throwaway server, every per-run read command as a
fresh process against a bare psycopg script running the same query, and whether per-run answers stay flat as
other runs accumulate in the same tables (the question partitioning ``agent_snapshots`` by run would answer).

Starts a throwaway server (the tests' helper: initdb + pg_ctl on 127.0.0.1), takes ``bench_scale``'s cached
SQLite runs (1,024 agents x 1,000 and x 10,000 episodes, built first when missing) and:

1. ``db copy`` of the 1 M-row run into a new database (timed: agent rows/s), then every case on it;
2. ``db copy`` of the 10 M-row run (its uuid changed, so it is a second run) into the same database, then
   every case on the 1 M-row run again (the same answers, now beside 10 M other rows: the growth is what
   other runs cost a run's queries) and on the 10 M-row run (the growth from 1 M to 10 M rows of one run).

The bare scripts are what a user could write without townlet: the scan over ``agent_snapshots`` that answered
before the rollups, or the query townlet runs. The machine is shared: read the ratios, not the seconds.

Run: `.venv/bin/python benchmarks/bench_scale_pg.py [--skip-slow]` (about 10 minutes with the slow cases).
"""

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_scale import BARE, CLI, database, measure
from tests.postgres_server import new_database, postgres_instance

#: The bare script: the query's rows fetched in batches (and dropped), as a user's script would read them.
BARE_SCRIPT = """
import psycopg, sys
with psycopg.connect(sys.argv[1]) as c, c.cursor(name="bare") as cursor:
    cursor.execute(sys.argv[2])
    while cursor.fetchmany(50000):
        pass
"""


def cases(url: str, run: int, episodes: int, agents: int, slow: bool) -> list[tuple[str, list[str], list[str]]]:
    """(name, townlet's command, the bare script) per case, for run ``run`` of ``episodes`` episodes."""
    py, flag, plain = sys.executable, ["--db", url], url.replace("postgresql+psycopg://", "postgresql://")

    def bare(name: str) -> list[str]:
        sql = BARE[name].format(episodes=episodes, middle=episodes // 2, agent=agents // 3)
        sql = sql.replace("run_id = 1", f"run_id = {run}")
        sql = sql.replace("GROUP BY e.id ORDER", "GROUP BY e.id, e.episode ORDER")  # PostgreSQL's GROUP BY rule
        return [py, "-c", BARE_SCRIPT, plain, sql]

    r = ["--run", str(run)]
    found = [
        ("episodes --run (whole run)", [CLI, "episodes", *r, "--json", *flag], bare("episodes")),
        ("episodes --last 5", [CLI, "episodes", *r, "--last", "5", "--json", *flag], bare("last")),
        ("episodes --points 1000", [CLI, "episodes", *r, "--points", "1000", "--json", *flag], bare("points")),
        ("replay --episode", [CLI, "replay", *r, "--episode", str(episodes // 2), "--json", *flag], bare("replay")),
        ("audit baselines --agent", [CLI, "audit", "baselines", *r, "--agent", str(agents // 3), "--json", *flag],
         bare("agent")),
    ]  # fmt: skip
    if slow:
        found += [
            ("audit baselines (whole run)", [CLI, "audit", "baselines", *r, *flag], bare("baselines")),
            ("audit rewards (whole run)", [CLI, "audit", "rewards", *r, *flag], bare("rewards")),
        ]
    return found


def copied(source: Path, url: str, uuid: str | None, scratch: Path) -> float:
    """``db copy`` of ``source``'s run into ``url`` (given a new ``uuid`` first, on a scratch copy); rows/s."""
    if uuid is not None:
        renamed = scratch / "renamed.db"
        shutil.copyfile(source, renamed)
        with sqlite3.connect(renamed) as connection:
            connection.execute("UPDATE runs SET run_uuid = ?", (uuid,))
        source = renamed
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as connection:
        rows = connection.execute("SELECT count(*) FROM agent_snapshots").fetchone()[0]
    seconds, _ = measure([CLI, "db", "copy", str(source), url])
    if uuid is not None:
        source.unlink()
    return rows / seconds


def report(url: str, run: int, episodes: int, agents: int, slow: bool, times: dict[str, list[float]]) -> None:
    print(f"{'case':32s} {'townlet':>9s} {'RSS':>7s} {'bare':>9s} {'ratio':>7s}")
    for name, ours, bare in cases(url, run, episodes, agents, slow):
        t_ours, rss = measure(ours)
        t_bare, _ = measure(bare)
        times.setdefault(name, []).append(t_ours)
        print(f"{name:32s} {t_ours:8.3f}s {rss:5d}MB {t_bare:8.3f}s {t_ours / t_bare:6.2f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1024)
    parser.add_argument("--sizes", default="1000,10000", help="Episodes of the small and the large run.")
    parser.add_argument("--skip-slow", action="store_true", help="Skip the whole-run audits (they read every row).")
    args = parser.parse_args()
    small_episodes, large_episodes = (int(s) for s in args.sizes.split(","))
    small, _ = database(args.agents, small_episodes)
    large, _ = database(args.agents, large_episodes)
    scratch = Path(tempfile.mkdtemp(prefix="townlet-bench-scale-pg-"))
    slow = not args.skip_slow
    alone: dict[str, list[float]] = {}
    beside: dict[str, list[float]] = {}
    try:
        with postgres_instance() as server:
            url = new_database(server.url)
            started = time.perf_counter()
            rate = copied(small, url, None, scratch)
            print(f"== PostgreSQL, run 1: {args.agents * small_episodes:,} agent rows, alone ==")
            print(f"db copy from SQLite: {rate:,.0f} agent rows/s ({time.perf_counter() - started:.1f} s)")
            report(url, 1, small_episodes, args.agents, slow, alone)
            started = time.perf_counter()
            rate = copied(large, url, "d" * 32, scratch)
            print(f"\n== run 2 ({args.agents * large_episodes:,} agent rows) copied into the same database ==")
            print(f"db copy from SQLite: {rate:,.0f} agent rows/s ({time.perf_counter() - started:.1f} s)")
            print("-- run 1 again, beside run 2 --")
            report(url, 1, small_episodes, args.agents, slow, alone)
            print("-- run 2 --")
            for name, times in alone.items():
                beside[name] = [times[0]]
            report(url, 2, large_episodes, args.agents, slow, beside)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("\nrun 1 beside run 2 / run 1 alone (what other runs cost a run's answers; partitioning would cut it):")
    for name, (first, second) in alone.items():
        print(f"  {name:32s} {second / first:6.2f}x  ({first:.3f}s -> {second:.3f}s)")
    print(f"\ngrowth from {small_episodes:,} to {large_episodes:,} episodes of one run (time ratio):")
    for name, (first, second) in beside.items():
        print(f"  {name:32s} {second / first:6.2f}x  ({first:.3f}s -> {second:.3f}s)")


if __name__ == "__main__":
    main()
