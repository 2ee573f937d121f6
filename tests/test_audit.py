"""The audit building blocks: sparklines, the jury's consensus baseline, and the flags on hand-built trajectories."""

from hypothesis import given, settings
from hypothesis import strategies as st

from townlet.audit.baselines import (
    BELOW_BASELINE,
    DISAGREES,
    WITHOUT_STAGE_CHANGE,
    Thresholds,
    audit_run,
    consensus,
)
from townlet.audit.rewards import COLUMNS as REWARD_COLUMNS
from townlet.audit.rewards import RewardCheck
from townlet.audit.sparkline import BARS, Bars, sparkline
from townlet.audit.visits import AFFORDANCES, audit_visits


def test_sparkline_scales_between_the_trajectorys_own_min_and_max():
    assert sparkline([0, 7, 14]) == BARS[0] + BARS[4] + BARS[7]
    assert sparkline([5.0, 5.0]) == BARS[3] * 2
    assert sparkline([]) == ""


def test_sparkline_buckets_long_trajectories_to_the_width():
    line = sparkline(list(range(1000)), width=10)
    assert len(line) == 10 and line[0] == BARS[0] and line[-1] == BARS[-1]


def test_count_sparkline_starts_from_zero():
    assert sparkline([0, 0, 0], from_zero=True) == BARS[0] * 3  # never visited: the floor, not mid height
    assert sparkline([7, 7], from_zero=True) == BARS[-1] * 2  # as often every episode: the top
    assert sparkline([0, 7, 14], from_zero=True) == BARS[0] + BARS[4] + BARS[7]


def test_visits_audit_counts_schema_1_rows_apart_instead_of_as_zero():
    assert AFFORDANCES == ("bed", "shower", "fridge", "job")
    nulls = (None,) * len(AFFORDANCES)
    rows = [(1, 0, *nulls), (1, 1, *nulls), (2, 0, 1, 0, 2, 0), (2, 1, 0, 0, 0, 3), (3, 0, 2, 0, 0, 0)]
    first, second = audit_visits([rows[:3], rows[3:]])  # batches cut through an episode
    assert (first.missing, second.missing) == (1, 1)
    assert first.to_dict() == {
        "agent_idx": 0,
        "episodes": [2, 3],
        "visits": {"bed": [1, 2], "shower": [0, 0], "fridge": [2, 0], "job": [0, 0]},
        "total": {"bed": 3, "shower": 0, "fridge": 2, "job": 0},
    }
    assert second.mean("job") == 3.0 and first.mean("bed") == 1.5


def test_consensus_outvotes_one_odd_juror():
    assert consensus([(1, 100.0), (1, 55.0), (1, 100.0)]) == (1, 100.0)
    assert consensus([(1, 55.0), (1, 100.0), (1, 100.0)]) == (1, 100.0)
    assert consensus([(1, 1.0), (1, 2.0), (1, 3.0)]) == (1, 1.0)  # no majority: agent 0's
    assert consensus([(1, 100.0)]) is None  # a single agent has nobody to disagree with


def test_baseline_moving_within_a_stage_is_flagged_but_a_stage_change_is_not():
    rows = [(1, 0, 1, 100.0, 100, 0.5), (2, 0, 1, 100.0, 100, 0.5), (3, 0, 2, 80.0, 80, 0.5), (4, 0, 2, 70.0, 70, None)]
    (audit,) = audit_run([rows], Thresholds())
    assert audit.stage_changes == [{"episode": 3, "from": 1, "to": 2}]
    assert [(f.flag, f.episode) for f in audit.flags] == [(WITHOUT_STAGE_CHANGE, 4)]


def test_survival_below_baseline_is_flagged_once_per_streak():
    survival = [10, 10, 10, 90, 10, 10, 10, 10, 10, 10, 10]
    rows = [(e, 0, 1, 100.0, s, None) for e, s in enumerate(survival, start=1)]
    (audit,) = audit_run([rows], Thresholds(below=0.5, streak=3))
    flags = [(f.flag, f.episode) for f in audit.flags]
    assert flags == [(BELOW_BASELINE, 3), (BELOW_BASELINE, 7)]
    assert "from episode 5" in audit.flags[1].detail


def test_full_run_audit_flags_only_the_odd_agent():
    rows = [(1, a, 1, 100.0, 100, 1.0) for a in range(4)]
    rows += [(2, a, 1, 55.0 if a == 2 else 100.0, 100, 1.0) for a in range(4)]
    audits = audit_run([rows[:3], rows[3:]], Thresholds())  # batches cut through an episode
    flagged = {(a.agent_idx, f.flag, f.episode) for a in audits for f in a.flags}
    assert (2, DISAGREES, 2) in flagged
    assert {agent for agent, flag, _ in flagged if flag == DISAGREES} == {2}
    (only,) = audit_run([rows], Thresholds(), only=2)
    assert only.flags == audits[2].flags


def test_reward_audit_recomputes_with_the_reward_strategy():
    agents = [
        {"episode": 1, "agent_idx": 0, "survival_steps": 120, "death_cause": "timeout",
         "baseline_survival_steps": 100.0, "episode_reward": 20.0},
        {"episode": 1, "agent_idx": 1, "survival_steps": 80, "death_cause": "energy",
         "baseline_survival_steps": 66.66666412353516, "episode_reward": 13.333335876464844},
        {"episode": 1, "agent_idx": 2, "survival_steps": 80, "death_cause": "energy",
         "baseline_survival_steps": 100.0, "episode_reward": -19.0},
    ]  # fmt: skip
    rows = [(a["episode"], a["agent_idx"], *(a[c] for c in REWARD_COLUMNS)) for a in agents]
    check = RewardCheck()
    mismatches = list(check.mismatches([rows[:2], [], rows[2:]]))
    assert [(m.agent_idx, m.expected_reward, m.stored_reward) for m in mismatches] == [(2, -20.0, -19.0)]
    assert check.checked == 3


# -- whole-run summaries: O(agents) memory, the same table ---------------------------------------------------

summary_rows = st.lists(
    st.tuples(st.integers(1, 4), st.sampled_from([100.0, 80.0, 50.0]), st.integers(0, 300), st.integers(0, 9)),
    min_size=1,
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(values=st.lists(st.floats(0, 1e6), min_size=0, max_size=300), width=st.integers(1, 60), zero=st.booleans())
def test_bars_filled_one_value_at_a_time_draw_the_sparkline_of_the_whole_list(values, width, zero):
    bars = Bars(len(values), width)
    for value in values:
        bars.add(value)
    assert bars.line(from_zero=zero) == sparkline(values, width, from_zero=zero)


@settings(max_examples=100, deadline=None)
@given(episodes=summary_rows, width=st.integers(1, 40), streak=st.integers(1, 4))
def test_a_summary_audit_keeps_what_the_table_shows_of_the_full_audit(episodes, width, streak):
    """Agents 0-2 are the jury; agent 3's rows are the generated ones (its baseline may disagree)."""
    rows = []
    for number, (stage, baseline, survival, _) in enumerate(episodes, start=1):
        rows += [(number, agent, stage, 100.0, 100, None) for agent in range(3)]
        rows.append((number, 3, stage, baseline, survival, 1.0))
    thresholds = Thresholds(below=0.5, streak=streak)
    full = audit_run([rows], thresholds)
    summary = audit_run([rows[:7], rows[7:]], thresholds, bars=(width, len(episodes)))
    for a, b in zip(full, summary, strict=True):
        assert (a.flags, a.stage_changes) == (b.flags, b.stage_changes)
        assert (len(a.episodes), a.baselines[0], a.baselines[-1]) == (b.count, b.first_baseline, b.last_baseline)
        assert (a.sparkline(width), a.survival_sparkline(width)) == (b.sparkline(width), b.survival_sparkline(width))
        assert len(b.episodes) == len(b.baselines) == 0  # nothing per episode is kept
    visit_rows = [(n, 0, v, v + 1, 0, 2 * v) for n, (_, _, _, v) in enumerate(episodes, start=1)]
    (all_visits,) = audit_visits([visit_rows])
    (few,) = audit_visits([visit_rows], bars=(width, len(episodes)))
    for name in AFFORDANCES:
        assert (all_visits.mean(name), all_visits.sparkline(name, width)) == (few.mean(name), few.sparkline(name))
    assert len(few.episodes) == 0
