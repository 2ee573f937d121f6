"""The exact-resume reference: a small config, and every stored telemetry field of a run but timestamps.

The ``straight`` fixture (``conftest.py``) trains 30 episodes of ``config`` in one session; resume tests
compare what a stopped and resumed run stored with it.
"""

import json

from sqlalchemy import text

from townlet.config import TownletConfig, load_config, with_overrides
from townlet.persistence.models import AGENT_FIELDS
from townlet.persistence.store import TelemetryStore

AGENTS = 3
TELEMETRY_SQL = (
    f"SELECT e.episode, e.steps, e.curriculum_stage, {', '.join(f'a.{f}' for f in AGENT_FIELDS)} "
    "FROM episodes e JOIN agent_snapshots a ON a.episode_pk = e.id WHERE e.run_id = :run "
    "ORDER BY e.episode, a.agent_idx"
)


def config(episodes: int, **training: int) -> TownletConfig:
    return with_overrides(load_config(), "training", episodes=episodes, agents=AGENTS, seed=0, device="cpu", **training)


def telemetry(db: str, run: int = 1) -> list[tuple]:
    """Every stored field of every episode and agent of a run, except timestamps and durations."""
    with TelemetryStore.open(db, write=False) as store, store.transaction() as connection:
        return [tuple(row) for row in connection.execute(text(TELEMETRY_SQL), {"run": run})]


RECORDED_SQL = (
    "SELECT e.episode, r.header, a.agent_idx, a.steps, a.blob FROM recordings r "
    "JOIN episodes e ON e.id = r.episode_pk JOIN recording_agents a ON a.episode_pk = r.episode_pk "
    "WHERE e.run_id = :run ORDER BY e.episode, a.agent_idx"
)


def recorded(db: str, run: int = 1) -> list[tuple]:
    """Every recorded agent's stored bytes and its recording's header, by episode; the header's ``reasons``
    left out (a session's last episode is recorded for that reason too)."""
    with TelemetryStore.open(db, write=False) as store, store.transaction() as connection:
        rows = connection.execute(text(RECORDED_SQL), {"run": run}).all()
    out = []
    for episode, header, agent, steps, blob in rows:
        head = json.loads(header) if isinstance(header, str) else dict(header)
        head.pop("reasons")
        out.append((episode, sorted(head.items()), agent, steps, bytes(blob)))
    return out
