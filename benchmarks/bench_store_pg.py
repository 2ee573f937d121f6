"""PostgreSQL write path: ``write_episode`` (binary COPY) vs a bare psycopg COPY of the same rows, same run.

Starts a throwaway PostgreSQL server (the tests' helper: initdb + pg_ctl on 127.0.0.1, fsync off), then per
episode and side: one transaction with the ``episodes`` row and every agent row.

- bare: psycopg ``COPY ... FROM STDIN (FORMAT BINARY)`` of ready-made tuples (its best case);
- townlet: ``TelemetryStore.write_episode`` from the DTO dicts the trainer has (COPY, binary);
- townlet executemany: the same with ``pg_copy`` off (what 0.4.0 did before COPY);
- 8 writers: 8 processes, each its own run, writing at once into one database (aggregate rows/s).

Target: townlet >= 0.9x bare. Run: `.venv/bin/python benchmarks/bench_store_pg.py [--agents 1024] [--episodes 100]`.
"""

import argparse
import multiprocessing
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_store import agent_columns
from tests.postgres_server import new_database, postgres_instance
from townlet.persistence.models import AGENT_FIELDS
from townlet.persistence.store import AGENT_COPY_SQL, AGENT_COPY_TYPES, EpisodeMeta, TelemetryStore
from townlet.telemetry.dto import AgentColumns

NOW = datetime.now(UTC)
META = EpisodeMeta(1, 100, 1, 0.1, NOW, NOW)


def townlet_rows_per_s(url: str, agents: AgentColumns, episodes: int, *, copy: bool = True) -> float:
    with TelemetryStore.open(url, write=True) as store:
        store.pg_copy = copy
        run = store.create_run(run_uuid=uuid.uuid4().hex, seed=0, device="cpu", num_agents=agents.num_agents, config={})
        started = time.perf_counter()
        for episode in range(1, episodes + 1):
            store.write_episode(run, replace(META, episode=episode), agents)
        return episodes * agents.num_agents / (time.perf_counter() - started)


def bare_rows_per_s(url: str, agents: AgentColumns, episodes: int) -> float:
    rows = list(agents.tuples(AGENT_FIELDS))
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        run = connection.execute(
            "INSERT INTO runs (run_uuid, started_at, status, seed, device, num_agents, config, code_version, "
            "schema_version) VALUES (%s, now(), 'finished', 0, 'cpu', %s, '{}', 'bench', 2) RETURNING id",
            (uuid.uuid4().hex, agents.num_agents),
        ).fetchone()[0]
        connection.commit()
        started = time.perf_counter()
        for episode in range(1, episodes + 1):
            with connection.transaction():
                pk = connection.execute(
                    "INSERT INTO episodes (run_id, episode, steps, curriculum_stage, duration_s, started_at, "
                    "finished_at) VALUES (%s, %s, 100, 1, 0.1, now(), now()) RETURNING id",
                    (run, episode),
                ).fetchone()[0]
                with connection.cursor() as cursor, cursor.copy(AGENT_COPY_SQL) as copy:
                    copy.set_types(AGENT_COPY_TYPES)
                    for row in rows:
                        copy.write_row((pk, 2, *row))
        return episodes * agents.num_agents / (time.perf_counter() - started)


def _writer(args: tuple[str, int, int, float]) -> tuple[float, float]:
    """One writer process: waits for a common start time, writes, returns its (start, end) wall times."""
    url, agents, episodes, start_at = args
    payloads = agent_columns(agents)
    time.sleep(max(0.0, start_at - time.time()))  # every process imported and built its rows first
    started = time.time()
    townlet_rows_per_s(url, payloads, episodes)
    return started, time.time()


def concurrent_rows_per_s(url: str, agents: int, episodes: int, writers: int) -> float:
    """Aggregate rows/s of ``writers`` processes writing at once (process start-up not counted)."""
    start_at = time.time() + 15.0
    with multiprocessing.get_context("spawn").Pool(writers) as pool:
        spans = pool.map(_writer, [(url, agents, episodes, start_at)] * writers)
    return writers * episodes * agents / (max(end for _, end in spans) - min(start for start, _ in spans))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1024)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=6)
    parser.add_argument("--writers", type=int, default=8)
    args = parser.parse_args()
    agents = agent_columns(args.agents)
    with postgres_instance() as server:

        def fresh() -> str:  # every measurement writes into an empty database: no side gets the bigger index
            url = new_database(server.url)
            TelemetryStore.open(url, write=True).close()  # the schema
            return url

        sides = {
            "bare psycopg COPY": lambda: bare_rows_per_s(fresh(), agents, args.episodes),
            "townlet write_episode (COPY)": lambda: townlet_rows_per_s(fresh(), agents, args.episodes),
            "townlet executemany (before)": lambda: townlet_rows_per_s(fresh(), agents, args.episodes, copy=False),
        }
        best: dict[str, float] = dict.fromkeys(sides, 0.0)
        for repeat in range(args.repeat):
            order = list(sides) if repeat % 2 == 0 else list(reversed(sides))  # alternate who goes first
            for name in order:
                best[name] = max(best[name], sides[name]())
        together = concurrent_rows_per_s(fresh(), args.agents, args.episodes, args.writers)
    bare = best["bare psycopg COPY"]
    print(f"{args.agents} agents x {args.episodes} episodes, best of {args.repeat}, rows/s:")
    for name, rate in best.items():
        print(f"  {name:<30} {rate:>10,.0f}  ({rate / bare:.2f}x bare)")
    speedup = best["townlet write_episode (COPY)"] / best["townlet executemany (before)"]
    print(f"  COPY vs executemany: {speedup:.1f}x")
    print(f"  {args.writers} concurrent writers (processes), aggregate: {together:,.0f} rows/s")


if __name__ == "__main__":
    main()
