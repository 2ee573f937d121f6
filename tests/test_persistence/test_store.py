"""TelemetryStore on SQLite and PostgreSQL: round trips, atomic episodes, resume bookkeeping."""

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import IntegrityError

from tests.helpers import finished_registry
from tests.test_telemetry_dto import GOOD_V1
from tests.test_telemetry_dto import snapshots as dto_strategy
from townlet.persistence.errors import EpisodeNotFound, RunNotFound
from townlet.persistence.reader import EpisodeAgents, TelemetryReader
from townlet.persistence.store import EpisodeMeta, TelemetryStore
from townlet.telemetry.dto import CURRENT_DTO, AgentTelemetrySnapshotV1, SnapshotValidationError
from townlet.telemetry.payloads import (
    build_agent_columns,
    build_envelope,
    encode,
    envelope_from_snapshots,
    episode_envelope,
)

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def read_back(store: TelemetryStore, run: int, episode: int) -> EpisodeAgents:
    """What the read side sees of one stored episode (a separate read-only connection)."""
    with TelemetryReader(store.url.render_as_string(hide_password=False)) as reader:
        return reader.episode_agents(reader.run(run), episode)


def meta(episode: int, stage: int = 1) -> EpisodeMeta:
    return EpisodeMeta(episode, steps=100, curriculum_stage=stage, duration_s=0.25, started_at=T0, finished_at=T0)


@pytest.fixture
def store(db_url):
    with TelemetryStore.open(db_url, write=True) as opened:
        yield opened


@pytest.fixture
def run(store):
    return store.create_run(run_uuid="a" * 32, seed=7, device="cpu", num_agents=4, config={"training": {"seed": 7}})


def test_new_database_is_created_at_head(store):
    assert store.created
    assert store.count_rows() == {"runs": 0, "episodes": 0, "agent_snapshots": 0}


def test_episode_round_trips_to_identical_envelope_bytes(store, run):
    envelope = episode_envelope("a" * 32, 3, finished_registry(4, baselines=[100.0, 80.0, 133.25, 66.5]).snapshot())
    store.write_episode(run, meta(3), CURRENT_DTO.check_dicts(envelope["agents"]))
    back = read_back(store, run, 3)
    assert encode(build_envelope("a" * 32, 3, back.agents, back.schema_version)) == encode(envelope)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dtos=st.lists(dto_strategy, min_size=1, max_size=6, unique_by=lambda d: d.agent_idx))
def test_any_snapshot_round_trips_byte_identically(store, run, dtos):
    last = store.last_episode(run)
    episode = 1 if last is None else last[0] + 1  # every example is a new episode of the same run
    dtos = [type(d)(**{**d.to_dict(), "episode": episode}) for d in sorted(dtos, key=lambda d: d.agent_idx)]
    envelope = envelope_from_snapshots("a" * 32, episode, dtos)
    store.write_episode(run, meta(episode), type(dtos[0]).check_dicts(envelope["agents"]))
    back = read_back(store, run, episode)
    assert [type(d).from_dict(agent) for d, agent in zip(dtos, back.agents, strict=True)] == dtos
    assert encode(build_envelope("a" * 32, episode, back.agents, back.schema_version)) == encode(envelope)


def test_a_failure_in_the_middle_of_an_episode_leaves_none_of_it(store, run):
    rows = episode_envelope("a" * 32, 1, finished_registry(6).snapshot())["agents"]
    broken = CURRENT_DTO.check_dicts([*rows[:3], rows[1], *rows[3:]])  # a duplicate agent row fails mid-insert
    agents = CURRENT_DTO.check_dicts(rows)
    with pytest.raises(IntegrityError):
        store.write_episode(run, meta(1), broken)
    assert store.count_rows()["episodes"] == 0
    assert store.count_rows()["agent_snapshots"] == 0
    store.write_episode(run, meta(1), agents)  # and the episode can still be written whole
    assert store.count_rows()["agent_snapshots"] == 6


def test_episode_numbers_are_unique_within_a_run(store, run):
    agents = build_agent_columns(finished_registry(2).snapshot(), 1)
    store.write_episode(run, meta(1), agents)
    with pytest.raises(IntegrityError):
        store.write_episode(run, meta(1), agents)
    assert store.count_rows() == {"runs": 1, "episodes": 1, "agent_snapshots": 2}


def test_last_episode_and_run_status(store, run):
    assert store.last_episode(run) is None
    agents = build_agent_columns(finished_registry(2).snapshot(), 1)
    store.write_episode(run, meta(1, stage=1), agents)
    store.write_episode(run, meta(2, stage=3), agents)
    assert store.last_episode(run) == (2, 3)
    store.set_run_status(run, "crashed")
    info = store.get_run(run)
    assert (info.status, info.seed, info.num_agents, info.config) == ("crashed", 7, 4, {"training": {"seed": 7}})
    assert info.ended_at is not None


def test_unknown_run_and_episode_are_errors_naming_the_fix(store, run):
    with pytest.raises(RunNotFound, match=r"no run 99 .*townlet-telemetry runs --db"):
        store.get_run(99)
    with pytest.raises(EpisodeNotFound, match=rf"run {run} has no episode 5"):
        read_back(store, run, 5)


def test_reader_sees_committed_episodes(db_url, store, run):
    agents = build_agent_columns(finished_registry(3).snapshot(), 1)
    store.write_episode(run, meta(1), agents)
    with TelemetryReader(db_url) as reader:
        assert len(reader.episode_agents(reader.run(run), 1).agents) == 3


def test_version_1_columns_are_stored_as_version_1_rows_with_null_v2_columns(store, run):
    v1 = [dict(GOOD_V1, agent_idx=i) for i in range(3)]
    store.write_episode(run, meta(1), AgentTelemetrySnapshotV1.check_dicts(v1))
    back = read_back(store, run, 1)
    assert back.schema_version == 1 and back.agents == v1
    with store.transaction() as c:
        assert c.exec_driver_sql("SELECT DISTINCT visits_bed, action_entropy FROM agent_snapshots").all() == [
            (None, None)
        ]


def test_agent_dicts_with_wrong_keys_are_refused_naming_the_agent():
    rows = [dict(GOOD_V1, agent_idx=0), {k: v for k, v in GOOD_V1.items() if k != "epsilon"}]
    with pytest.raises(SnapshotValidationError, match=r"agents\[1\]: V1 keys differ: missing \['epsilon'\]"):
        AgentTelemetrySnapshotV1.check_dicts(rows)
