"""The versioned DTO: carries its version, validates itself, serialises deterministically."""

import dataclasses
import subprocess
import sys

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import finished_registry
from townlet.environment.world import AFFORDANCES
from townlet.telemetry.dto import (
    CURRENT_DTO,
    DEATH_CAUSES,
    SCHEMA_VERSION,
    AgentTelemetrySnapshotV1,
    AgentTelemetrySnapshotV2,
    SnapshotValidationError,
    TelemetryLeakError,
)
from townlet.telemetry.payloads import (
    UnknownSchemaVersionError,
    agents_from_envelope,
    build_agent_columns,
    decode,
    encode,
    envelope_from_snapshots,
    episode_envelope,
)

GOOD_V1 = dict(
    agent_idx=0, episode=1, survival_steps=120, baseline_survival_steps=100.0, episode_reward=20.0, epsilon=0.1,
    curriculum_stage=1, death_cause="energy", meter_energy=0.0, meter_hygiene=0.5, meter_satiation=1.0,
    meter_money=0.25,
)  # fmt: skip
GOOD = dict(GOOD_V1, visits_bed=3, visits_shower=0, visits_fridge=1, visits_job=2, action_entropy=1.25)


def test_dto_carries_its_schema_version_and_it_is_the_one_announced():
    assert AgentTelemetrySnapshotV1.SCHEMA_VERSION == 1
    assert AgentTelemetrySnapshotV2.SCHEMA_VERSION == 2
    assert CURRENT_DTO is AgentTelemetrySnapshotV2
    assert CURRENT_DTO.SCHEMA_VERSION == SCHEMA_VERSION == 2
    assert episode_envelope("r", 1, finished_registry(2).snapshot())["schema_version"] == SCHEMA_VERSION


def test_to_dict_keys_are_sorted_and_it_round_trips():
    dto = AgentTelemetrySnapshotV2(**GOOD)
    assert list(dto.to_dict()) == sorted(f.name for f in dataclasses.fields(dto))
    assert AgentTelemetrySnapshotV2.from_dict(dto.to_dict()) == dto


def test_v1_stays_readable_and_v2_extends_it_field_for_field():
    v1 = AgentTelemetrySnapshotV1.from_dict(GOOD_V1)
    assert v1.to_dict() == GOOD_V1 and list(v1.to_dict()) == sorted(GOOD_V1)
    v2_fields = [f.name for f in dataclasses.fields(AgentTelemetrySnapshotV2)]
    assert v2_fields[: len(GOOD_V1)] == list(GOOD_V1)  # V1's fields first, in V1's order
    with pytest.raises(SnapshotValidationError, match="missing"):
        AgentTelemetrySnapshotV2.from_dict(GOOD_V1)


def test_v2_has_one_visit_counter_per_affordance_of_the_world():
    visit_fields = {name for name in AgentTelemetrySnapshotV2.RULES if name.startswith("visits_")}
    assert visit_fields == {f"visits_{a.name}" for a in AFFORDANCES}


def test_same_snapshot_gives_the_same_bytes():
    snapshot = finished_registry(6).snapshot()
    first = encode(episode_envelope("r", 2, snapshot))
    assert encode(episode_envelope("r", 2, snapshot)) == first
    assert first.startswith(b'{"agents":[{"action_entropy":0.0,"agent_idx":0,')  # sorted keys, no whitespace
    assert b" " not in first


def test_envelopes_are_sorted_by_construction_so_encode_skips_the_sort_pass():
    snapshot = finished_registry(5).snapshot()
    built = episode_envelope("r", 3, snapshot)
    stored = envelope_from_snapshots("r", 3, [CURRENT_DTO.from_dict(a) for a in built["agents"]])
    for envelope in (built, stored):
        assert encode(envelope) == orjson.dumps(envelope, option=orjson.OPT_SORT_KEYS)
        assert encode(envelope) == encode(dict(envelope))  # a plain dict of the same content takes the sorting path


def test_episode_constant_and_range_columns_are_checked_too():
    snapshot = finished_registry(3).snapshot()
    with pytest.raises(SnapshotValidationError, match=r"agents\[\*\]\.episode: 0"):
        build_agent_columns(snapshot, episode=0)
    with pytest.raises(TelemetryLeakError, match=r"agents\[\*\]\.episode: numpy\.int64"):
        build_agent_columns(snapshot, episode=np.int64(2))
    columns = dict(build_agent_columns(snapshot, 1).columns)
    with pytest.raises(SnapshotValidationError, match=r"agents\[0\]\.agent_idx: -1"):
        CURRENT_DTO.check_columns({**columns, "agent_idx": range(-1, 2)})
    with pytest.raises(SnapshotValidationError, match="columns differ"):
        CURRENT_DTO.check_columns(columns, constants={"episode": 1})  # episode given twice


def test_bytes_are_identical_across_a_process_boundary():
    code = (
        "import sys; from tests.helpers import finished_registry; "
        "from townlet.telemetry.payloads import encode, episode_envelope; "
        "sys.stdout.buffer.write(encode(episode_envelope('r', 2, finished_registry(6).snapshot())))"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout
    assert other == encode(episode_envelope("r", 2, finished_registry(6).snapshot()))


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("agent_idx", -1, SnapshotValidationError),
        ("episode", 0, SnapshotValidationError),
        ("survival_steps", 1.5, TelemetryLeakError),
        ("baseline_survival_steps", -1.0, SnapshotValidationError),
        ("baseline_survival_steps", 100, TelemetryLeakError),
        ("episode_reward", float("nan"), TelemetryLeakError),
        ("epsilon", 1.01, SnapshotValidationError),
        ("curriculum_stage", 0, SnapshotValidationError),
        ("curriculum_stage", True, TelemetryLeakError),
        ("death_cause", "alive", SnapshotValidationError),
        ("meter_money", 1.5, SnapshotValidationError),
        ("meter_energy", float("-inf"), TelemetryLeakError),
        ("visits_bed", -1, SnapshotValidationError),
        ("visits_job", 2.0, TelemetryLeakError),
        ("action_entropy", 1.7, SnapshotValidationError),  # above ln 5
        ("action_entropy", float("nan"), TelemetryLeakError),
    ],
)
def test_dto_rejects_bad_values_naming_the_field(field, value, error):
    with pytest.raises(error, match=field):
        AgentTelemetrySnapshotV2(**{**GOOD, field: value})


def test_negative_zero_becomes_zero():
    dto = AgentTelemetrySnapshotV2(**{**GOOD, "episode_reward": -0.0, "meter_energy": -0.0})
    assert str(dto.episode_reward) == str(dto.meter_energy) == "0.0"


def test_from_dict_refuses_missing_and_unknown_keys():
    data = AgentTelemetrySnapshotV2(**GOOD).to_dict()
    with pytest.raises(SnapshotValidationError, match=r"missing \['epsilon'\], unknown \['eps'\]"):
        AgentTelemetrySnapshotV2.from_dict({**{k: v for k, v in data.items() if k != "epsilon"}, "eps": 0.1})


def test_decode_refuses_unknown_versions_with_one_line():
    with pytest.raises(UnknownSchemaVersionError, match=r"schema_version 99 is not one this townlet reads \(1, 2\)"):
        decode(b'{"schema_version":99,"kind":"episode_snapshot"}')
    with pytest.raises(UnknownSchemaVersionError, match="not JSON"):
        decode(b"{nope")


def test_column_builder_and_per_agent_dto_agree():
    snapshot = finished_registry(5).snapshot()
    rows = build_agent_columns(snapshot, episode=4).rows()
    assert [CURRENT_DTO.from_dict(r).to_dict() for r in rows] == rows


unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
visits = st.integers(0, 10_000)
snapshots = st.builds(
    AgentTelemetrySnapshotV2,
    agent_idx=st.integers(0, 10_000),
    episode=st.integers(1, 10**9),
    survival_steps=st.integers(0, 10**6),
    baseline_survival_steps=st.floats(min_value=0.0, max_value=1e9, allow_nan=False),
    episode_reward=st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
    epsilon=unit,
    curriculum_stage=st.integers(1, 100),
    death_cause=st.sampled_from(sorted(DEATH_CAUSES)),
    meter_energy=unit,
    meter_hygiene=unit,
    meter_satiation=unit,
    meter_money=unit,
    visits_bed=visits,
    visits_shower=visits,
    visits_fridge=visits,
    visits_job=visits,
    action_entropy=st.floats(min_value=0.0, max_value=1.6, allow_nan=False),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(snapshots, min_size=1, max_size=8))
def test_envelope_bytes_round_trip_to_equal_dtos(dtos):
    envelope = envelope_from_snapshots("run", 1, dtos)
    data = encode(envelope)
    assert agents_from_envelope(decode(data)) == dtos
    assert encode(decode(data)) == data
