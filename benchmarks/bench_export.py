"""Export at size: bytes per agent row (SQLite file vs Parquet), rows/s and peak memory of each format.

Builds a SQLite database of ``--agents`` x ``--episodes`` agent rows (the store's own write path, values
drawn afresh per episode), then runs ``townlet-telemetry export`` as a child process per format and reads
its peak RSS (``ru_maxrss`` of the child). With ``--pg`` the same run is copied into a throwaway PostgreSQL
server (``db copy``) and exported from there (a server-side cursor).

Run: `.venv/bin/python benchmarks/bench_export.py [--agents 1024] [--episodes 1000] [--pg]`.
"""

import argparse
import contextlib
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_store import agent_columns
from townlet.persistence.store import EpisodeMeta, TelemetryStore

CLI = [sys.executable, "-m", "townlet_cli"]


def build(db: Path, agents: int, episodes: int) -> int:
    rows = 0
    with TelemetryStore.open(str(db), write=True) as store:
        run = store.create_run(run_uuid="b" * 32, seed=0, device="cpu", num_agents=agents, config={})
        now = datetime.now(UTC)
        pool = [agent_columns(agents) for _ in range(8)]  # varied values, like a real run's
        for episode in range(1, episodes + 1):
            agents_of_episode = random.choice(pool)  # the agent rows do not store the episode: its row does
            store.write_episode(run, EpisodeMeta(episode, 100, 1, 0.1, now, now), agents_of_episode)
            rows += agents_of_episode.num_agents
        store.set_run_status(run, "finished")
    return rows


PEAK = (
    "import resource, runpy, sys\n"
    "sys.argv = ['townlet-telemetry', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('townlet_cli', run_name='__main__')\n"
    "finally:\n    print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)


def export(db: str, fmt: str, out: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one export, in a child process of its own."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PEAK, "export", "--run", "1", "-f", fmt, "--out", str(out), "--db", db],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    peak_kb = int(next(line for line in done.stderr.splitlines() if line.startswith("PEAK")).split()[1])
    return elapsed, peak_kb / 1024


def train(db: Path, agents: int, episodes: int) -> int:
    """A real run's rows (real values compress as real values do)."""
    subprocess.run(
        [*CLI, "train", "--agents", str(agents), "--episodes", str(episodes), "--device", "cpu", "--db", str(db)],
        check=True, capture_output=True,
    )  # fmt: skip
    return agents * episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1024)
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--pg", action="store_true", help="also export from PostgreSQL")
    parser.add_argument("--formats", nargs="+", default=["csv", "jsonl", "parquet"])
    parser.add_argument("--trained", action="store_true", help="rows from a real `train` run, not synthetic ones")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory, contextlib.ExitStack() as stack:
        root = Path(directory)
        db = root / "bench.db"
        rows = (train if args.trained else build)(db, args.agents, args.episodes)
        print(f"{rows:,} agent rows; SQLite file {db.stat().st_size / rows:.1f} bytes per row")
        sources = {"sqlite": str(db)}
        if args.pg:
            from tests.postgres_server import new_database, postgres_instance

            url = new_database(stack.enter_context(postgres_instance()).url)  # stopped as the stack closes
            subprocess.run([*CLI, "db", "copy", str(db), url], check=True, capture_output=True)
            sources["postgresql"] = url
        for name, source in sources.items():
            for fmt in args.formats:
                out = root / f"out.{fmt}"
                seconds, peak = export(source, fmt, out)
                print(
                    f"{name:>10} {fmt:>7}: {rows / seconds:>9,.0f} rows/s, peak RSS {peak:6.0f} MB, "
                    f"{out.stat().st_size / rows:6.1f} bytes per row"
                )
                out.unlink()


if __name__ == "__main__":
    main()
