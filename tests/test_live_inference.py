"""Plan phase 3: the payload builder hands out primitives only and names any leak by its field path."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from tests.helpers import finished_registry
from townlet.config import load_config, with_overrides
from townlet.environment.world import METERS
from townlet.population.snapshots import ColumnFacts
from townlet.telemetry.broadcast import FakeBroadcaster
from townlet.telemetry.dto import CURRENT_DTO, SCHEMA_VERSION, SnapshotValidationError, TelemetryLeakError
from townlet.telemetry.payloads import build_agent_columns, check_json_safe, episode_envelope
from townlet.telemetry.stream import EpisodePublisher
from townlet.training.loop import Trainer

PRIMITIVES = (int, float, str, bool, type(None))


def _walk(value, path="$"):
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str, path
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")
    else:
        yield path, value


def test_payloads_are_primitives_only():
    payloads = build_agent_columns(finished_registry(5).snapshot(), episode=3).rows()
    assert len(payloads) == 5
    for path, value in _walk(payloads):
        assert type(value) in PRIMITIVES, f"{path}: {type(value)}"
        if type(value) is float:
            assert math.isfinite(value), path
    json.dumps(payloads, allow_nan=False)


def _leaky_snapshot(field: str, agent: int, bad):
    snapshot = finished_registry(4).snapshot()
    column = list(getattr(snapshot, field))
    column[agent] = bad
    return dataclasses.replace(snapshot, **{field: column})


@pytest.mark.parametrize(
    ("bad", "shown"),
    [
        (torch.tensor(100.0), "torch.Tensor"),
        (np.float64(100.0), "numpy.float64"),
        (np.float32(100.0), "numpy.float32"),
        (float("nan"), "non-finite float nan"),
        (float("inf"), "non-finite float inf"),
    ],
)
def test_leak_raises_naming_the_field_path(bad, shown):
    with pytest.raises(TelemetryLeakError, match=rf"agents\[3\]\.baseline_survival_steps: {shown}"):
        build_agent_columns(_leaky_snapshot("baseline_survival_steps", 3, bad), episode=1)


def test_leak_in_a_meter_and_in_an_int_field_is_named_too():
    snapshot = finished_registry(3).snapshot()
    meters = [list(column) for column in snapshot.meter_columns]
    meters[0][1] = torch.tensor(0.5)
    with pytest.raises(TelemetryLeakError, match=r"agents\[1\]\.meter_energy: torch\.Tensor"):
        build_agent_columns(dataclasses.replace(snapshot, meter_columns=meters), episode=1)
    with pytest.raises(SnapshotValidationError, match=r"3 meter_columns for 4 names"):
        build_agent_columns(dataclasses.replace(snapshot, meter_columns=meters[:3]), episode=1)
    with pytest.raises(TelemetryLeakError, match=r"agents\[2\]\.survival_steps: numpy\.int64"):
        build_agent_columns(_leaky_snapshot("survival_steps", 2, np.int64(7)), episode=1)


def test_out_of_range_values_are_refused_naming_the_agent():
    with pytest.raises(SnapshotValidationError, match=r"agents\[0\]\.epsilon: 1\.5"):
        build_agent_columns(_leaky_snapshot("epsilon", 0, 1.5), episode=1)
    with pytest.raises(SnapshotValidationError, match=r"agents\[2\]\.death_cause: 'alive'"):
        build_agent_columns(_leaky_snapshot("death_cause", 2, "alive"), episode=1)


def test_check_json_safe_walks_nested_structures():
    check_json_safe({"a": [1, 2.5, "x", None, True, {"b": []}]}, "m")
    with pytest.raises(TelemetryLeakError, match=r"m\.a\[1\]\.b: torch\.Tensor"):
        check_json_safe({"a": [0, {"b": torch.zeros(1)}]}, "m")


def test_multi_agent_scalar_baseline_regression():
    """Every agent's own baseline reaches the payload as a plain float (Hamlet broadcast agent 0's tensor)."""
    payloads = build_agent_columns(finished_registry(3, baselines=[100.0, 80.0, 133.25]).snapshot(), episode=1).rows()
    assert [p["baseline_survival_steps"] for p in payloads] == [100.0, 80.0, 133.25]
    assert all(type(p["baseline_survival_steps"]) is float for p in payloads)
    shared = build_agent_columns(finished_registry(3).snapshot(), episode=1).rows()
    assert {p["baseline_survival_steps"] for p in shared} == {100.0}
    # finished_registry: agents survive 10, 20, 30 steps; each reward is its own steps minus its own baseline.
    assert [p["survival_steps"] for p in payloads] == [10, 20, 30]
    assert [p["episode_reward"] for p in payloads] == [-90.0, -60.0, -103.25]


def test_training_publishes_one_valid_envelope_per_episode_to_the_broadcaster():
    config = with_overrides(load_config(), "training", agents=3, episodes=2, device="cpu")
    fake = FakeBroadcaster()
    publisher = EpisodePublisher("run-1", [fake])
    for report in Trainer(config).run(2):
        publisher.publish_episode(report.episode, report.snapshot)
    publisher.close()
    assert fake.closed
    envelopes = [json.loads(m) for m in fake.messages]
    assert [e["episode"] for e in envelopes] == [1, 2]
    for envelope in envelopes:
        assert envelope["schema_version"] == SCHEMA_VERSION == 2
        assert envelope["kind"] == "episode_snapshot"
        assert envelope["run_id"] == "run-1"
        assert [a["agent_idx"] for a in envelope["agents"]] == [0, 1, 2]
        json.dumps(envelope, allow_nan=False)


def test_envelope_has_the_documented_shape():
    envelope = episode_envelope("r", 7, finished_registry(2).snapshot())
    assert list(envelope) == ["agents", "episode", "kind", "run_id", "schema_version"]  # sorted, as encoded
    assert list(envelope["agents"][0]) == sorted([
        "agent_idx", "episode", "survival_steps", "baseline_survival_steps", "episode_reward", "epsilon",
        "curriculum_stage", "death_cause", "meter_energy", "meter_hygiene", "meter_satiation", "meter_money",
        "visits_bed", "visits_shower", "visits_fridge", "visits_job", "action_entropy",
    ])  # fmt: skip
    assert {a["episode"] for a in envelope["agents"]} == {7}


def test_bad_values_in_the_registrys_tensors_are_named_even_when_the_snapshot_carries_facts():
    registry = finished_registry(4)
    registry._baseline[2] = float("nan")
    registry._meters[1, METERS.index("money")] = 1.5
    snapshot = registry.snapshot()
    assert snapshot.facts  # the registry's own snapshot: the facts are there, and they give the bad values away
    with pytest.raises(TelemetryLeakError, match=r"agents\[2\]\.baseline_survival_steps: non-finite float nan"):
        build_agent_columns(snapshot, episode=1)
    registry._baseline[2] = 1.0
    with pytest.raises(SnapshotValidationError, match=r"agents\[1\]\.meter_money: 1\.5 is outside \[0\.0, 1\.0\]"):
        build_agent_columns(registry.snapshot(), episode=1)


@pytest.mark.parametrize(
    ("facts", "admitted"),
    [
        (ColumnFacts(float, 0.0, 1.0), True),
        (ColumnFacts(float, 0.0, 1.5), False),  # above the range
        (ColumnFacts(float, math.nan, math.nan), False),  # a NaN somewhere
        (ColumnFacts(int, 0, 1), False),  # ints where the rule wants floats
    ],
)
def test_facts_admit_a_column_only_when_they_prove_every_value(facts, admitted):
    assert CURRENT_DTO.RULES["meter_energy"].admits(facts) is admitted


@pytest.mark.parametrize("value", [math.inf, -math.inf], ids=["inf", "-inf"])
@pytest.mark.parametrize("field", ["episode_reward", "baseline_survival_steps"])
def test_an_infinity_in_an_unbounded_float_column_of_the_registry_is_refused_naming_the_field(field, value):
    """Those columns have no range to fall outside: only the facts' finiteness check keeps an Infinity (which
    would reach the envelope as ``null``) from passing on the facts alone."""
    registry = finished_registry(4)
    tensor = registry._episode_reward if field == "episode_reward" else registry._baseline
    tensor[3] = value
    snapshot = registry.snapshot()
    assert snapshot.facts[field].high == value or snapshot.facts[field].low == value  # the facts carry it
    with pytest.raises(TelemetryLeakError, match=rf"agents\[3\]\.{field}: non-finite float {value}"):
        build_agent_columns(snapshot, episode=1)
