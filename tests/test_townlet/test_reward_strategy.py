"""Plan phase 2: RewardStrategy is stateless; the baseline tensor is an argument, one value per agent."""

import inspect

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.legacy_reward_oracle import LegacyScalarRewardStrategy
from townlet.environment.reward_strategy import RewardStrategy


def _rewards(steps, dones, baselines, device="cpu"):
    return RewardStrategy().calculate_rewards(
        torch.tensor(steps, device=device),
        torch.tensor(dones, device=device),
        torch.tensor(baselines, dtype=torch.float32, device=device),
    )


def test_constructible_with_no_arguments_and_holds_no_baseline():
    strategy = RewardStrategy()
    assert not any("baseline" in name for name in vars(strategy))
    params = inspect.signature(RewardStrategy.calculate_rewards).parameters
    assert list(params) == ["self", "step_counts", "dones", "baseline_steps_tensor"]


def test_dead_agent_gets_steps_minus_baseline_alive_agent_gets_zero(device):
    rewards = _rewards([30, 50, 120], [True, False, True], [100.0, 100.0, 100.0], device)
    assert rewards.device.type == device.type
    assert rewards.dtype == torch.float32
    assert rewards.cpu().tolist() == [-70.0, 0.0, 20.0]


def test_death_on_the_very_first_step_counts_that_step():
    assert _rewards([1], [True], [100.0]).tolist() == [-99.0]


def test_death_exactly_at_the_baseline_gives_zero():
    assert _rewards([100], [True], [100.0]).tolist() == [0.0]


def test_timeout_at_max_steps_is_rewarded_like_any_episode_end():
    max_steps = 200
    assert _rewards([max_steps, max_steps], [True, False], [100.0, 100.0]).tolist() == [100.0, 0.0]


def test_fractional_baseline_is_kept():
    assert _rewards([80], [True], [133.25]).tolist() == [-53.25]


def test_agents_with_different_baselines_get_independent_rewards(device):
    rewards = _rewards([100, 100, 100], [True, True, True], [100.0, 80.0, 125.0], device)
    assert rewards.cpu().tolist() == [0.0, 20.0, -25.0]


def test_no_gradient_tracking_even_with_a_grad_baseline():
    baseline = torch.full((2,), 10.0, requires_grad=True)
    rewards = RewardStrategy().calculate_rewards(torch.tensor([5, 6]), torch.tensor([True, True]), baseline)
    assert not rewards.requires_grad


@pytest.mark.parametrize(
    ("steps", "dones", "baselines", "message"),
    [
        ([1, 2], [True], [1.0, 1.0], r"dones must have shape \(2,\)"),
        ([1, 2], [True, False], [1.0], r"baseline_steps_tensor must have shape \(2,\).*get_baseline_tensor"),
        ([[1, 2]], [True, False], [1.0, 1.0], r"step_counts must be 1-D"),
    ],
)
def test_shape_mismatch_is_a_clear_error(steps, dones, baselines, message):
    with pytest.raises(ValueError, match=message):
        _rewards(steps, dones, baselines)


def test_non_bool_dones_is_refused():
    with pytest.raises(ValueError, match="bool"):
        RewardStrategy().calculate_rewards(torch.tensor([1]), torch.tensor([1]), torch.tensor([1.0]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA lane: needs a GPU to mix devices")
def test_device_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="one device"):
        RewardStrategy().calculate_rewards(torch.tensor([1]), torch.tensor([True]), torch.tensor([1.0], device="cuda"))


def test_strategy_pinned_to_a_device_refuses_tensors_elsewhere():
    strategy = RewardStrategy(device="meta")
    with pytest.raises(ValueError, match="runs on meta"):
        strategy.calculate_rewards(torch.tensor([1]), torch.tensor([True]), torch.tensor([1.0]))


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(min_value=1, max_value=10_000), st.booleans()), min_size=1, max_size=64),
    baseline=st.floats(min_value=0.0, max_value=10_000.0, allow_nan=False, width=32),
)
def test_matches_legacy_scalar_strategy_when_agents_share_the_baseline(data, baseline):
    steps = torch.tensor([s for s, _ in data])
    dones = torch.tensor([d for _, d in data])
    legacy = LegacyScalarRewardStrategy(baseline).calculate_rewards(steps, dones)
    new = RewardStrategy().calculate_rewards(steps, dones, torch.full((len(data),), baseline))
    assert torch.equal(new, legacy)


@settings(max_examples=100, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=10_000),
            st.booleans(),
            st.floats(min_value=0.0, max_value=10_000.0, allow_nan=False, width=32),
        ),
        min_size=1,
        max_size=64,
    )
)
def test_each_agent_matches_legacy_with_its_own_baseline(data):
    steps = torch.tensor([s for s, _, _ in data])
    dones = torch.tensor([d for _, d, _ in data])
    baselines = torch.tensor([b for _, _, b in data])
    new = RewardStrategy().calculate_rewards(steps, dones, baselines)
    for i, (_, _, baseline) in enumerate(data):
        alone = LegacyScalarRewardStrategy(baseline).calculate_rewards(steps[i : i + 1], dones[i : i + 1])
        assert new[i].item() == alone[0].item()
