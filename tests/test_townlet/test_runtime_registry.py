"""Plan phase 1: the AgentRuntimeRegistry owns per-agent runtime tensors and snapshots them as scalars."""

import dataclasses
import functools
import json
import math
import operator

import pytest
import torch

from tests.helpers import finished_registry
from townlet.environment.world import CAUSE_TIMEOUT, METERS
from townlet.population.runtime_registry import AgentRuntimeRegistry
from townlet.population.snapshots import ColumnFacts


def test_initial_baselines_default_to_zero_tensor_on_device(device):
    registry = AgentRuntimeRegistry(4, device)
    baseline = registry.get_baseline_tensor()
    assert baseline.shape == (4,)
    assert baseline.device.type == device.type
    assert baseline.dtype == torch.float32
    assert torch.equal(baseline.cpu(), torch.zeros(4))
    assert not baseline.requires_grad


def test_set_baseline_accepts_float_and_stores_tensor(device):
    registry = AgentRuntimeRegistry(3, device)
    registry.set_baseline(1, 125.5)
    baseline = registry.get_baseline_tensor()
    assert isinstance(baseline, torch.Tensor)
    assert baseline.cpu().tolist() == [0.0, 125.5, 0.0]


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(), (1,), (1, 1)])
def test_set_baseline_accepts_tensor_of_any_float_dtype_and_shape_one(device, dtype, shape):
    registry = AgentRuntimeRegistry(2, device)
    registry.set_baseline(0, torch.full(shape, 80.0, dtype=dtype))
    baseline = registry.get_baseline_tensor()
    assert baseline.device.type == device.type
    assert baseline.dtype == torch.float32
    assert baseline.cpu().tolist() == [80.0, 0.0]


def test_set_baseline_moves_tensor_from_another_device(device):
    registry = AgentRuntimeRegistry(2, device)
    registry.set_baseline(1, torch.tensor(42.0, device="cpu", requires_grad=True))
    baseline = registry.get_baseline_tensor()
    assert baseline.device.type == device.type
    assert not baseline.requires_grad
    assert baseline.cpu().tolist() == [0.0, 42.0]


def test_set_baselines_sets_every_agent_at_once(device):
    registry = AgentRuntimeRegistry(3, device)
    registry.set_baselines(100.0)
    assert registry.get_baseline_tensor().cpu().tolist() == [100.0, 100.0, 100.0]
    registry.set_baselines(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    assert registry.get_baseline_tensor().cpu().tolist() == [1.0, 2.0, 3.0]


def test_get_baseline_tensor_is_a_copy_the_caller_cannot_corrupt(device):
    registry = AgentRuntimeRegistry(2, device)
    registry.set_baselines(10.0)
    registry.get_baseline_tensor().fill_(-1.0)
    assert registry.get_baseline_tensor().cpu().tolist() == [10.0, 10.0]


@pytest.mark.parametrize("index", [-1, 3, 100])
def test_out_of_range_index_names_agent_and_valid_range(index):
    registry = AgentRuntimeRegistry(3)
    with pytest.raises(IndexError, match=rf"agent {index} is out of range .*0\.\.2"):
        registry.set_baseline(index, 1.0)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), -5.0])
def test_non_finite_or_negative_baseline_is_refused_naming_the_agent(value):
    registry = AgentRuntimeRegistry(3)
    with pytest.raises(ValueError, match=r"baseline for agent 2 .*finite"):
        registry.set_baseline(2, value)
    with pytest.raises(ValueError, match=r"baseline for agent 2 .*finite"):
        registry.set_baseline(2, torch.tensor(value))
    assert registry.get_baseline_tensor().tolist() == [0.0, 0.0, 0.0]


def test_wrong_shape_tensor_is_refused_with_the_fix():
    registry = AgentRuntimeRegistry(3)
    with pytest.raises(ValueError, match=r"agent 0 must be a number or a 1-element tensor.*set_baselines"):
        registry.set_baseline(0, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        registry.set_baselines(torch.tensor([1.0, 2.0]))


def test_non_finite_entry_in_batched_baselines_names_the_agent():
    registry = AgentRuntimeRegistry(3)
    with pytest.raises(ValueError, match=r"agent 1 is nan"):
        registry.set_baselines(torch.tensor([1.0, float("nan"), 2.0]))


def test_integer_tensor_and_bool_are_refused():
    registry = AgentRuntimeRegistry(2)
    with pytest.raises(ValueError, match="float tensor"):
        registry.set_baseline(0, torch.tensor(3))
    with pytest.raises(TypeError):
        registry.set_baseline(0, True)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        registry.set_baseline(True, 1.0)  # type: ignore[arg-type]


def test_get_snapshot_for_agent_returns_python_scalars_only(device):
    registry = AgentRuntimeRegistry(2, device)
    registry.set_baseline(1, torch.tensor(133.25, device=device))
    registry.set_epsilon(0.5)
    registry.set_curriculum_stage(3)
    snapshot = registry.get_snapshot_for_agent(1)
    as_dict = dataclasses.asdict(snapshot)
    json.dumps(as_dict, allow_nan=False)
    for key, value in as_dict.items():
        assert type(value) in (int, float, str, dict), key
    assert snapshot.baseline_survival_steps == 133.25
    assert type(snapshot.survival_steps) is int
    assert snapshot.curriculum_stage == 3
    assert snapshot.epsilon == 0.5
    assert snapshot.death_cause == "alive"
    assert list(snapshot.meters) == list(METERS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.epsilon = 1.0  # type: ignore[misc]


def test_multi_agent_baselines_are_independent(device):
    registry = AgentRuntimeRegistry(4, device)
    for agent, value in enumerate([100.0, 133.0, 80.0, 66.5]):
        registry.set_baseline(agent, value)
    registry.set_baseline(2, 90.0)
    assert [registry.get_snapshot_for_agent(i).baseline_survival_steps for i in range(4)] == [100.0, 133.0, 90.0, 66.5]


def test_batched_snapshot_matches_per_agent_snapshots(device):
    registry = AgentRuntimeRegistry(3, device)
    registry.set_baselines(torch.tensor([10.0, 20.0, 30.0]))
    registry.record_step(
        step_counts=torch.tensor([5, 7, 9], device=device),
        rewards=torch.tensor([0.0, -13.0, 0.0], device=device),
        dones=torch.tensor([False, True, True], device=device),
        death_cause=torch.tensor([-1, 0, CAUSE_TIMEOUT], device=device),
        meters=torch.rand(3, len(METERS), device=device),
    )
    batched = registry.snapshot()
    assert batched.agents() == [registry.get_snapshot_for_agent(i) for i in range(3)]
    assert batched.death_cause == ("alive", METERS[0], "timeout")
    json.dumps([dataclasses.asdict(a) for a in batched.agents()], allow_nan=False)


@pytest.mark.parametrize("agents", [2, 64])
def test_batched_snapshot_converts_per_field_never_per_agent_and_never_with_item(monkeypatch, agents):
    registry = AgentRuntimeRegistry(agents)
    calls = {"tolist": 0, "item": 0}
    real_tolist, real_item = torch.Tensor.tolist, torch.Tensor.item

    def counting_tolist(self):
        calls["tolist"] += 1
        return real_tolist(self)

    def counting_item(self):
        calls["item"] += 1
        return real_item(self)

    monkeypatch.setattr(torch.Tensor, "tolist", counting_tolist)
    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    registry.snapshot()
    # 9 fields, and the facts of the 8 numeric ones at once: the same count whatever the number of agents
    assert calls == {"tolist": 9 + 1, "item": 0}


def in_order(values) -> ColumnFacts:
    """A column's facts by definition: the sums added one value after another, in agent order, as doubles."""
    kind = type(values[0])
    total = functools.reduce(operator.add, map(float, values), 0.0)
    squares = functools.reduce(operator.add, (float(v) * v for v in values), 0.0)
    return ColumnFacts(kind, min(values), max(values), total, squares)


def test_snapshot_facts_are_each_columns_type_min_max_and_sums_in_agent_order():
    registry = finished_registry(300)
    registry.set_baselines(torch.rand(300) * 1e4)  # magnitudes that make the order of the additions matter
    snapshot = registry.snapshot()
    assert snapshot.facts["survival_steps"] == in_order(snapshot.survival_steps)
    assert snapshot.facts["baseline_survival_steps"] == in_order(snapshot.baseline_survival_steps)
    assert snapshot.facts["meter_columns"] == tuple(map(in_order, snapshot.meter_columns))
    assert snapshot.facts["visit_columns"] == tuple(map(in_order, snapshot.visit_columns))
    assert type(snapshot.facts["visit_columns"][0].low) is int
    assert dataclasses.replace(snapshot, epsilon=(0.5,) * 300).facts == {}  # another column: no facts vouch for it


def test_begin_episode_resets_per_episode_fields_but_keeps_baseline():
    registry = AgentRuntimeRegistry(2)
    registry.set_baselines(50.0)
    registry.record_step(
        torch.tensor([3, 4]),
        torch.tensor([1.0, 2.0]),
        torch.tensor([True, False]),
        torch.tensor([1, -1]),
        torch.ones(2, len(METERS)),
    )
    registry.begin_episode()
    snap = registry.snapshot()
    assert snap.survival_steps == (0, 0)
    assert snap.episode_reward == (0.0, 0.0)
    assert snap.death_cause == ("alive", "alive")
    assert snap.baseline_survival_steps == (50.0, 50.0)


def test_snapshot_never_carries_negative_zero():
    registry = AgentRuntimeRegistry(2)
    registry.record_step(
        torch.tensor([1, 1]),
        torch.tensor([-0.0, 0.0]),
        torch.tensor([True, True]),
        torch.tensor([0, 0]),
        torch.full((2, len(METERS)), -0.0),
    )
    snap = registry.snapshot()
    for value in [*snap.episode_reward, *(v for column in snap.meter_columns for v in column)]:
        assert str(value) == "0.0"


# -- schema version 2: affordance visits and action entropy ----------------------------------------


def test_visit_counters_and_action_entropy_on_a_hand_built_sequence(device):
    from townlet.environment.world import ACTIONS, AFFORDANCES

    registry = AgentRuntimeRegistry(3, device)
    registry.begin_episode()
    bed, fridge = [a.name for a in AFFORDANCES].index("bed"), [a.name for a in AFFORDANCES].index("fridge")
    up, interact = ACTIONS.index("up"), ACTIONS.index("interact")
    # Agent 0: up, up, interact (bed), interact (bed). Agent 1: interact (fridge) once, then stops acting.
    # Agent 2: interact refused (no affordance used) four times.
    steps = [
        ([up, interact, interact], [True, True, True], [-1, fridge, -1]),
        ([up, up, interact], [True, False, True], [-1, -1, -1]),
        ([interact, up, interact], [True, False, True], [bed, -1, -1]),
        ([interact, up, interact], [True, False, True], [bed, -1, -1]),
    ]
    for actions, acted, used in steps:
        registry.record_actions(
            torch.tensor(actions, device=device),
            torch.tensor(acted, device=device),
            torch.tensor(used, device=device),
        )
    snapshot = registry.snapshot()
    visits = [snapshot.agent(i).affordance_visits for i in range(3)]
    assert visits[0] == {"bed": 2, "shower": 0, "fridge": 0, "job": 0}
    assert visits[1] == {"bed": 0, "shower": 0, "fridge": 1, "job": 0}
    assert visits[2] == {"bed": 0, "shower": 0, "fridge": 0, "job": 0}
    # Entropy of the empirical action frequencies, in nats: agent 0 chose up 2/4, interact 2/4 -> ln 2;
    # agent 1 acted once -> 0; agent 2 always interact -> 0.
    assert snapshot.action_entropy[0] == pytest.approx(math.log(2), abs=1e-6)
    assert snapshot.action_entropy[1:] == (0.0, 0.0)
    assert all(type(v) is float for v in snapshot.action_entropy)
    assert all(type(v) is int for column in snapshot.visit_columns for v in column)


def test_action_entropy_of_a_uniform_policy_is_log_of_the_action_count(device):
    from townlet.environment.world import ACTIONS

    registry = AgentRuntimeRegistry(2, device)
    registry.begin_episode()
    for action in range(len(ACTIONS)):
        registry.record_actions(
            torch.tensor([action, 0], device=device),
            torch.tensor([True, True], device=device),
            torch.tensor([-1, -1], device=device),
        )
    entropy = registry.snapshot().action_entropy
    # Agent 0: each of the 5 actions once -> ln 5. Agent 1: action 0 five times -> 0.
    assert entropy[0] == pytest.approx(math.log(len(ACTIONS)), abs=1e-6)
    assert entropy[1] == 0.0


def test_begin_episode_resets_visits_and_action_counts(device):
    registry = AgentRuntimeRegistry(2, device)
    registry.record_actions(
        torch.tensor([4, 0], device=device), torch.tensor([True, True], device=device),
        torch.tensor([0, -1], device=device),
    )  # fmt: skip
    registry.begin_episode()
    snapshot = registry.snapshot()
    assert snapshot.visit_columns == ((0, 0),) * 4  # one column per affordance
    assert snapshot.action_entropy == (0.0, 0.0)
