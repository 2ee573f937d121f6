"""Write path: ``TelemetryStore.write_episode`` vs raw ``sqlite3.executemany`` of the same rows, same run.

Both write ``--episodes`` episodes of ``--agents`` agents into SQLite files with the same PRAGMAs (WAL,
synchronous=NORMAL, busy_timeout, foreign keys), one transaction per episode (``BEGIN IMMEDIATE``, the
episode row, then every agent row). The sides take turns episode by episode, so load on the machine falls on
both alike (run it beside a busy process to see the ratio hold). The raw side gets its rows as ready-made
tuples (its best case); the store gets the checked columns the trainer actually hands it. The hand-made table is
equivalent: same columns, same primary key (WITHOUT ROWID), same foreign key to ``episodes``. Also prints
bytes per agent row against a minimal hand-written table with the same columns. Target: store >= 0.9x raw rows/s.

Run: `.venv/bin/python benchmarks/bench_store.py [--agents 1024] [--episodes 200]`.
"""

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from townlet.environment.world import CAUSE_TIMEOUT, METERS
from townlet.persistence.models import AGENT_FIELDS
from townlet.persistence.store import EpisodeMeta, TelemetryStore
from townlet.persistence.writer import ATTEMPT_BUSY_MS
from townlet.population.runtime_registry import AgentRuntimeRegistry
from townlet.telemetry.dto import AgentColumns
from townlet.telemetry.payloads import build_agent_columns

COLUMNS = ("episode_pk", "schema_version", *AGENT_FIELDS)
TYPES = {"death_cause": "VARCHAR(16)"}


def agent_columns(n: int) -> AgentColumns:
    registry = AgentRuntimeRegistry(n)
    registry.set_baselines(100.0)  # one baseline for every agent, as a stage gives them (no baseline flag)
    registry.set_epsilon(0.3)
    registry.record_step(
        torch.randint(1, 200, (n,)), torch.randn(n) * 50, torch.ones(n, dtype=torch.bool),
        torch.full((n,), CAUSE_TIMEOUT), torch.rand(n, len(METERS)),
    )  # fmt: skip
    return build_agent_columns(registry.snapshot(), 1)


def raw_connection(path: Path, *, minimal: bool) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "busy_timeout = 30000", "foreign_keys = ON"):
        connection.execute(f"PRAGMA {pragma}")
    columns = ", ".join(
        f"{c} {TYPES.get(c, 'REAL' if c.startswith(('meter', 'baseline', 'episode_r', 'eps')) else 'INTEGER')} NOT NULL"
        for c in COLUMNS
    )
    connection.execute("CREATE TABLE episodes (id INTEGER PRIMARY KEY, run_id INTEGER, episode INTEGER, steps INTEGER, "
                       "curriculum_stage INTEGER, duration_s REAL, started_at TEXT, finished_at TEXT)")  # fmt: skip
    if minimal:
        connection.execute(f"CREATE TABLE agent_rows ({columns})")
    else:
        connection.execute(
            f"CREATE TABLE agent_rows ({columns}, PRIMARY KEY (episode_pk, agent_idx), "
            "FOREIGN KEY (episode_pk) REFERENCES episodes (id) ON DELETE CASCADE) WITHOUT ROWID"
        )
    return connection


class RawWriter:
    """The bare side: ``sqlite3.executemany`` of ready-made tuples, the episode key set per episode."""

    def __init__(self, path: Path, rows: list[tuple], *, minimal: bool = False) -> None:
        self.connection = raw_connection(path, minimal=minimal)
        self.rows = rows
        self.sql = f"INSERT INTO agent_rows VALUES ({', '.join('?' for _ in COLUMNS)})"

    def write(self, episode: int) -> None:
        connection = self.connection
        connection.execute("BEGIN IMMEDIATE")
        pk = connection.execute(
            "INSERT INTO episodes (run_id, episode, steps, curriculum_stage, duration_s, started_at, finished_at) "
            "VALUES (1, ?, 100, 1, 0.1, '2026-11-25', '2026-11-25')",
            (episode,),
        ).lastrowid
        connection.executemany(self.sql, [(pk, *row[1:]) for row in self.rows])
        connection.execute("COMMIT")

    def close(self) -> None:
        self.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.connection.close()


class StoreWriter:
    """townlet's side: ``TelemetryStore.write_episode`` of the checked columns the trainer has; ``as_writer``: as the
    background writer calls it (the file-identity check and a short per-transaction busy timeout)."""

    def __init__(self, path: Path, agents: AgentColumns, *, as_writer: bool = False) -> None:
        self.path = path
        self.store = TelemetryStore.open(str(path), write=True)
        n = agents.num_agents
        self.run = self.store.create_run(run_uuid="bench", seed=0, device="cpu", num_agents=n, config={})
        self.agents, self.as_writer = agents, as_writer
        self.now = datetime.now(UTC)

    def write(self, episode: int) -> None:
        if self.as_writer:
            self.store.require_same_file()
        meta = EpisodeMeta(episode, 100, 1, 0.1, self.now, self.now)
        self.store.write_episode(
            self.run, meta, self.agents, busy_timeout_ms=ATTEMPT_BUSY_MS if self.as_writer else None
        )

    def close(self) -> None:
        self.store.close()
        with sqlite3.connect(self.path) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def interleaved(writers: dict[str, RawWriter | StoreWriter], episodes: int) -> dict[str, list[float]]:
    """Every episode written by every side in turn (the order rotating), each write timed alone: whatever load
    the machine carries lands on all sides alike, so the ratios hold on a busy machine too."""
    times: dict[str, list[float]] = {name: [] for name in writers}
    order = list(writers)
    for episode in range(1, episodes + 1):
        for name in order:
            started = time.perf_counter()
            writers[name].write(episode)
            times[name].append(time.perf_counter() - started)
        order.append(order.pop(0))
    return times


def agent_table_bytes(path: Path, table: str) -> int:
    with sqlite3.connect(path) as connection:
        try:
            return connection.execute("SELECT SUM(pgsize) FROM dbstat WHERE name = ?", (table,)).fetchone()[0]
        except sqlite3.OperationalError:  # SQLite built without dbstat: fall back to the whole file
            return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=1024)
    parser.add_argument("--episodes", type=int, default=200)
    args = parser.parse_args()
    agents = agent_columns(args.agents)
    rows = [(1, 1, *row) for row in agents.tuples(AGENT_FIELDS)]
    total = args.agents * args.episodes
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        writers: dict[str, RawWriter | StoreWriter] = {
            "raw": RawWriter(d / "raw.db", rows),
            "store": StoreWriter(d / "store.db", agents),
            "writer": StoreWriter(d / "writer.db", agents, as_writer=True),
        }
        times = interleaved(writers, args.episodes)
        for writer in writers.values():
            writer.close()
        minimal = RawWriter(d / "minimal.db", rows, minimal=True)
        for episode in range(1, args.episodes + 1):
            minimal.write(episode)
        minimal.close()
        store_bytes = agent_table_bytes(d / "store.db", "agent_snapshots") / total
        raw_bytes = agent_table_bytes(d / "raw.db", "agent_rows") / total
        minimal_bytes = agent_table_bytes(d / "minimal.db", "agent_rows") / total
    t_raw, t_store, t_writer = (sum(times[name]) for name in ("raw", "store", "writer"))
    per_episode = statistics.median(r / s for r, s in zip(times["raw"], times["store"], strict=True))
    print(f"{args.agents} agents x {args.episodes} episodes = {total:,} agent rows, SQLite {sqlite3.sqlite_version}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    print(f"raw sqlite3.executemany:      {total / t_raw:>11,.0f} rows/s")
    print(f"TelemetryStore.write_episode: {total / t_store:>11,.0f} rows/s")
    print(f"as the background writer:     {total / t_writer:>11,.0f} rows/s")
    print(
        f"ratio store/raw: {t_raw / t_store:.2f}x (target >= 0.9x), median per episode {per_episode:.2f}x; "
        f"writer path/raw: {t_raw / t_writer:.2f}x"
    )
    print(f"bytes per agent row: store {store_bytes:.1f}, same table by hand {raw_bytes:.1f}, "
          f"minimal rowid table {minimal_bytes:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
