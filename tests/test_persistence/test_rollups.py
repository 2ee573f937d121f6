"""Per-episode rollups (revision 0004): whatever runs are written, every answer read from the rollups equals the
answer a scan of the agent rows gives, on SQLite and PostgreSQL; `db check` finds a tampered one and repairs it.

The scan-based answers are computed here with the SQL the readers ran before the rollups existed.
"""

import math
import sqlite3
import uuid
from datetime import UTC, datetime

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from typer.testing import CliRunner

from tests.helpers import ALL_MATCH, tamper, trained
from tests.test_telemetry_dto import snapshots as v2_snapshots
from townlet.environment.world import CAUSE_TIMEOUT, METERS
from townlet.persistence import migrate
from townlet.persistence.reader import EpisodeSummary, TelemetryReader
from townlet.persistence.rollups import ROLLUP_COLUMNS, rollup_select
from townlet.persistence.store import EpisodeMeta, TelemetryStore
from townlet.population.runtime_registry import AgentRuntimeRegistry
from townlet.telemetry.dto import FIELD_NAMES, AgentTelemetrySnapshotV1, AgentTelemetrySnapshotV2
from townlet.telemetry.payloads import build_agent_columns
from townlet_cli.app import app

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

#: The scan: what `episodes` read before revision 0004 (every agent row of the episodes shown).
SCAN_EPISODES = """
SELECT e.episode, e.steps, e.curriculum_stage, e.duration_s, count(a.agent_idx),
       avg(CAST(a.survival_steps AS DOUBLE PRECISION)), min(a.survival_steps), max(a.survival_steps),
       avg(a.episode_reward), min(a.episode_reward), max(a.episode_reward),
       avg(a.baseline_survival_steps), avg(a.epsilon)
FROM (SELECT id, episode, steps, curriculum_stage, duration_s FROM episodes
      WHERE run_id = :run ORDER BY episode {direction} LIMIT :limit) e
JOIN agent_snapshots a ON a.episode_pk = e.id
GROUP BY e.id, e.episode, e.steps, e.curriculum_stage, e.duration_s
ORDER BY e.episode
"""
SCAN_BUCKETS = """
SELECT min(e.episode), max(e.episode), count(DISTINCT e.id), max(e.curriculum_stage), count(*),
       avg(CAST(a.survival_steps AS DOUBLE PRECISION)), min(a.survival_steps), max(a.survival_steps),
       avg(a.episode_reward), min(a.episode_reward), max(a.episode_reward), avg(a.baseline_survival_steps),
       avg(a.epsilon)
FROM episodes e JOIN agent_snapshots a ON a.episode_pk = e.id
WHERE e.run_id = :run
GROUP BY ((e.episode - :first) * :points) / :span
ORDER BY 1
"""
MEANS = {5, 8, 11, 12}  # the bucket fields that are means: sums added in another order, equal to rounding


def equal(mine: list, theirs: list, exact: bool) -> None:
    """SQLite adds an episode's rows in key order in the rollup and in a scan alike: bit for bit equal. A
    PostgreSQL scan adds them in heap order, which a resume's deletes can change (new rows fill freed space),
    so a scan itself is only defined up to the order of its additions: means agree to rounding there."""
    if exact:
        assert mine == theirs
        return
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs, strict=True):
        assert (a is None) == (b is None)
        for x, y in zip(a or (), b or (), strict=True):
            assert x == y or math.isclose(x, y, rel_tol=1e-12), (a, b)


def scan(store: TelemetryStore, sql: str, **params) -> list[tuple]:
    with store.transaction() as c:
        return [tuple(row) for row in c.execute(text(sql), params)]


def as_v1(dto: AgentTelemetrySnapshotV2) -> AgentTelemetrySnapshotV1:
    return AgentTelemetrySnapshotV1(**{name: getattr(dto, name) for name in FIELD_NAMES[AgentTelemetrySnapshotV1]})


def write(store: TelemetryStore, run: int, episode: int, dtos: list, v1: bool) -> None:
    """One episode of the generated agents, renumbered 0..n-1, all of one schema version."""
    dtos = [type(d)(**{**d.to_dict(), "agent_idx": i, "episode": episode}) for i, d in enumerate(dtos)]
    dtos = [as_v1(d) for d in dtos] if v1 else dtos
    cls = AgentTelemetrySnapshotV1 if v1 else AgentTelemetrySnapshotV2
    meta = EpisodeMeta(episode, 100, dtos[0].curriculum_stage if dtos else 1, 0.5, T0, T0)
    store.write_episode(run, meta, cls.check_dicts([d.to_dict() for d in dtos]))


episode_agents = st.lists(v2_snapshots, min_size=0, max_size=5)
episodes_strategy = st.lists(st.tuples(episode_agents, st.booleans()), min_size=1, max_size=7)


@pytest.fixture
def store(db_url):
    with TelemetryStore.open(db_url, write=True) as opened:
        yield opened


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=episodes_strategy, after=st.integers(0, 7), again=episodes_strategy, points=st.integers(2, 5))
def test_every_rollup_answer_equals_the_scan_of_the_agent_rows(store, first, after, again, points):
    """V1 and V2 episodes mixed, episodes without agents, a resume that replaces the episodes after a kill."""
    run = store.create_run(run_uuid=uuid.uuid4().hex, seed=0, device="cpu", num_agents=5, config={})
    for number, (dtos, v1) in enumerate(first, start=1):
        write(store, run, number, dtos, v1)
    after = min(after, len(first))
    store.resume_run(run, after=after)  # the episodes past the checkpoint go, with their rollups
    for number, (dtos, v1) in enumerate(again, start=after + 1):
        write(store, run, number, dtos, v1)

    exact = store.url.get_backend_name() == "sqlite"  # see equal()
    with TelemetryReader(store.url.render_as_string(hide_password=False)) as reader:
        chosen = reader.run(run)
        every = scan(store, SCAN_EPISODES.format(direction="ASC"), run=run, limit=10**9)
        equal(reader.episodes(chosen), [EpisodeSummary(*r) for r in every], exact)
        final = scan(store, SCAN_EPISODES.format(direction="DESC"), run=run, limit=2)
        equal(reader.episodes(chosen, last=2), [EpisodeSummary(*r) for r in final], exact)
        means = reader.last_episode_means()
        newest = scan(store, SCAN_EPISODES.format(direction="DESC"), run=run, limit=1)  # none if it has no agents
        equal([means.get(run)], [(newest[0][5], newest[0][11]) if newest else None], exact)
        first_episode, last_episode = 1, after + len(again)
        span = last_episode - first_episode + 1
        buckets = reader.episode_buckets(chosen, points)
    if span > points:
        scanned = scan(store, SCAN_BUCKETS, run=run, first=first_episode, points=points, span=span)
        assert len(buckets) == len(scanned)
        for bucket, row in zip(buckets, scanned, strict=True):
            for i, (mine, theirs) in enumerate(zip(bucket, row, strict=True)):
                if i in MEANS:
                    assert math.isclose(mine, theirs, rel_tol=1e-12, abs_tol=1e-9), (i, bucket, row)
                else:
                    assert mine == theirs, (i, bucket, row)
    assert [d for d in store.check_rollups() if d.run == run] == []
    if exact:  # the write path's fold is what the database's aggregate gives, bit for bit
        where = "e.run_id = :run"
        stored = f"SELECT r.* FROM episode_rollups r JOIN episodes e ON e.id = r.episode_pk WHERE {where} ORDER BY 1"
        assert scan(store, stored, run=run) == scan(store, rollup_select(where) + " ORDER BY 1", run=run)
    with store.transaction() as c:  # one rollup per episode, none left behind by the replaced ones
        orphans = c.execute(
            text("SELECT count(*) FROM episode_rollups WHERE episode_pk NOT IN (SELECT id FROM episodes)")
        )
        assert orphans.scalar_one() == 0
        per_run = c.execute(
            text("SELECT count(*) FROM episode_rollups r JOIN episodes e ON e.id = r.episode_pk WHERE e.run_id = :run"),
            {"run": run},
        )
        assert per_run.scalar_one() == after + len(again)


def test_an_episode_and_its_rollup_are_one_transaction(store):
    run = store.create_run(run_uuid="b" * 32, seed=0, device="cpu", num_agents=2, config={})
    good = [AgentTelemetrySnapshotV2(**{**d, "agent_idx": i}) for i, d in enumerate([GOOD] * 2)]
    agents = AgentTelemetrySnapshotV2.check_dicts([d.to_dict() for d in good])
    meta = EpisodeMeta(1, 100, 1, 0.5, T0, T0)
    store.write_episode(run, meta, agents)
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        store.write_episode(run, meta, agents)  # the same episode again: refused whole
    assert store.count_rows()["episodes"] == 1
    assert scan(store, "SELECT count(*) FROM episode_rollups") == [(1,)]


GOOD = {
    "agent_idx": 0,
    "episode": 1,
    "survival_steps": 120,
    "baseline_survival_steps": 100.0,
    "episode_reward": 20.0,
    "epsilon": 0.5,
    "curriculum_stage": 1,
    "death_cause": "energy",
    "meter_energy": 0.0,
    "meter_hygiene": 0.5,
    "meter_satiation": 0.25,
    "meter_money": 0.75,
    "visits_bed": 1,
    "visits_shower": 2,
    "visits_fridge": 3,
    "visits_job": 4,
    "action_entropy": 1.25,
}


def test_the_write_path_and_the_backfill_build_the_same_rollups(tmp_path):
    """Revision 0004's frozen backfill SQL and ``rollups.py`` agree: rebuilt with the migration's statement, every
    rollup a trainer wrote comes out identical."""
    db = trained(tmp_path / "t.db", episodes=4, agents=3)
    everything = "SELECT * FROM episode_rollups ORDER BY episode_pk"
    written = rows(db, everything)
    backfill = migrate._module("0004").backfill_sql()
    connection = sqlite3.connect(db)
    try:
        with connection:
            connection.execute("DELETE FROM episode_rollups")
            connection.execute(backfill, {"run": 1, "first": 1, "last": 4})
    finally:
        connection.close()
    assert len(written) == 4 and rows(db, everything) == written


def test_db_check_names_a_tampered_rollup_and_repair_rebuilds_it(tmp_path):
    db = trained(tmp_path / "t.db", episodes=3, agents=3)
    runner = CliRunner()
    tamper(db, "UPDATE episode_rollups SET episode_reward_max = 1e6 WHERE episode_pk = 2")
    found = runner.invoke(app, ["db", "check", "--db", str(db)])
    assert found.exit_code == 1
    assert found.stdout.splitlines() == [
        f"rollup differs: run 1 episode 2: episode_reward_max is 1000000.0, its agent rows give "
        f"{scan_one(db, 'SELECT max(episode_reward) FROM agent_snapshots WHERE episode_pk = 2')}: "
        f"rebuild it with `townlet-telemetry db check --repair --db {db}`"
    ]
    repaired = runner.invoke(app, ["db", "check", "--repair", "--db", str(db)])
    assert repaired.exit_code == 0, repaired.output
    assert "rebuilt the rollups of run 1 (3 episodes) from its agent rows" in repaired.stderr
    assert ALL_MATCH in repaired.stdout
    assert runner.invoke(app, ["db", "check", "--db", str(db)]).exit_code == 0


def rows(db, sql: str) -> list[tuple]:
    connection = sqlite3.connect(db)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def scan_one(db, sql: str):
    return rows(db, sql)[0][0]


def test_the_rollup_columns_are_the_tables(tmp_path):
    db = tmp_path / "t.db"
    with TelemetryStore.open(str(db), write=True):
        pass
    assert tuple(row[1] for row in rows(db, "PRAGMA table_info(episode_rollups)")) == ROLLUP_COLUMNS


CAUSES = torch.tensor([CAUSE_TIMEOUT, *range(3)])  # timeout, energy, hygiene, satiation


def test_a_trainers_rollups_from_the_registrys_facts_are_what_the_database_adds(store):
    """The registry's facts (sums by ``cumsum`` in agent order) stand in for the fold: bit for bit what SQLite's
    aggregate of the stored rows gives, on values whose sums depend on the order of the additions."""
    run = store.create_run(run_uuid=uuid.uuid4().hex, seed=0, device="cpu", num_agents=700, config={})
    generator = torch.Generator().manual_seed(7)
    for episode in (1, 2, 3):
        registry = AgentRuntimeRegistry(700)
        registry.set_baselines(torch.rand(700, generator=generator) * 10**episode)
        registry.set_epsilon(0.1 * episode)
        registry.record_step(
            torch.randint(1, 500, (700,), generator=generator), torch.randn(700, generator=generator) * 1e3,
            torch.ones(700, dtype=torch.bool), CAUSES[torch.randint(0, 4, (700,), generator=generator)],
            torch.rand(700, len(METERS), generator=generator),
        )  # fmt: skip
        agents = build_agent_columns(registry.snapshot(), episode)
        assert agents.facts  # the fast path is the one under test
        store.write_episode(run, EpisodeMeta(episode, 100, 1, 0.5, T0, T0), agents)
    where = "e.run_id = :run"
    stored = f"SELECT r.* FROM episode_rollups r JOIN episodes e ON e.id = r.episode_pk WHERE {where} ORDER BY 1"
    if store.url.get_backend_name() == "sqlite":
        assert scan(store, stored, run=run) == scan(store, rollup_select(where) + " ORDER BY 1", run=run)
    assert [d for d in store.check_rollups() if d.run == run] == []
