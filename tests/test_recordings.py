"""Recordings are exact: replaying the recorded actions through a fresh env reproduces every position and meter
bit for bit, the last step agrees with the stored agent row, the stored bytes decode to the DTO exactly, and the
choke point refuses a bad value naming it."""

import dataclasses
import sqlite3

import pytest
import torch

from tests.conftest import DEVICES
from townlet.config import RecordingConfig, load_config, with_overrides
from townlet.environment.grid import VectorizedGridEnv
from townlet.environment.world import ACTIONS, INITIAL_METERS, METERS
from townlet.errors import TelemetryError
from townlet.persistence.store import TelemetryStore
from townlet.telemetry.dto import SnapshotValidationError, TelemetryLeakError
from townlet.telemetry.recording import FRAME_COLUMNS, EpisodeRecording, recording_from_frames
from townlet.telemetry.recording_codec import RecordingDamaged, decode_agent, encode_agent
from townlet.training.loop import Trainer
from townlet.training.recorder import recorded_agents
from townlet.training.session import TrainingSession


def every_episode(config, **recording):
    return dataclasses.replace(config, recording=RecordingConfig(every=1, **recording))


def trained_recordings(agents: int, episodes: int, seed: int, device: str = "cpu", **recording) -> list:
    config = with_overrides(load_config(), "training", agents=agents, episodes=episodes, seed=seed, device="cpu")
    trainer = Trainer(every_episode(config, **recording), torch.device(device))
    trainer.recording_plan.last_planned = episodes
    return [trainer.run_episode(e) for e in range(1, episodes + 1)]


def replay_through_env(recording: EpisodeRecording, device: str) -> None:
    """Step a fresh env with the recorded actions from the recorded start; compare every step's state."""
    head = recording.header
    agents = recording.agents
    env = VectorizedGridEnv(len(agents), grid_size=head.grid_size, max_steps=head.max_steps, device=device)
    env.set_depletion(list(head.depletion))
    env.reset()
    env.positions = torch.tensor([a.start for a in agents], dtype=torch.long, device=device)
    for t in range(head.steps):
        actions = torch.tensor([a.actions[t] if t < a.steps else 0 for a in agents], device=device)
        env.step(actions)
        positions, meters = env.positions.tolist(), env.meters.tolist()
        for k, agent in enumerate(agents):
            if t < agent.steps:
                assert positions[k] == [agent.rows[t], agent.cols[t]], (agent.agent_idx, t)
                assert meters[k] == [series[t] for series in agent.meters], (agent.agent_idx, t)
    assert env.all_done
    assert env.step_counts.tolist() == [a.steps for a in agents]


@pytest.mark.parametrize("device", DEVICES)
def test_replaying_the_recorded_actions_reproduces_every_position_and_meter_bit_for_bit(device):
    reports = trained_recordings(agents=6, episodes=4, seed=3, device=device)
    assert all(r.recording is not None for r in reports)
    for report in reports:
        replay_through_env(report.recording, device)


def test_replaying_a_wrong_action_is_caught():
    """The re-simulation check can fail: one flipped action moves the agent elsewhere."""
    (report,) = trained_recordings(agents=2, episodes=1, seed=0)
    agent = report.recording.agents[0]
    moved = next(t for t, a in enumerate(agent.actions) if a != ACTIONS.index("interact"))
    actions = list(agent.actions)
    actions[moved] = ACTIONS.index("interact")
    broken = dataclasses.replace(agent, actions=actions)
    damaged = dataclasses.replace(report.recording, agents=(broken, *report.recording.agents[1:]))
    with pytest.raises(AssertionError):
        replay_through_env(damaged, "cpu")


@pytest.mark.parametrize(("seed", "agents"), [(0, 1), (1, 5), (7, 9)])
def test_each_recording_agrees_with_its_agent_rows_and_db_check_says_so(tmp_path, seed, agents):
    db = str(tmp_path / "t.db")
    config = with_overrides(load_config(), "training", agents=agents, episodes=5, seed=seed, device="cpu")
    TrainingSession(every_episode(config), db=db).run()
    with TelemetryStore.open(db, write=False) as store:
        checked, problems = store.check_recordings()
    assert (checked, problems) == (5 * agents, [])
    with sqlite3.connect(db) as connection:  # a tampered agent row no longer agrees with its recording
        connection.execute("UPDATE agent_snapshots SET survival_steps = survival_steps + 1 WHERE agent_idx = 0")
        connection.execute("UPDATE agent_snapshots SET visits_bed = visits_bed + 1 WHERE agent_idx = 0")
    with TelemetryStore.open(db, write=False) as store:
        checked, problems = store.check_recordings()
    assert len(problems) == 5 and all("agent 0:" in p and "steps recorded, survival" in p for p in problems)
    assert all("affordance uses" in p for p in problems)


def test_the_stored_bytes_decode_to_the_recording_exactly_and_damage_is_named():
    (report,) = trained_recordings(agents=3, episodes=1, seed=5, q_values=True)
    initial = tuple(INITIAL_METERS[m] for m in METERS)
    for agent in report.recording.agents:
        blob = encode_agent(agent, initial)
        assert decode_agent(blob, agent.agent_idx, initial, "here") == agent
        assert agent.q_values is not None and len(agent.q_values) == len(ACTIONS)
    blob = bytearray(encode_agent(report.recording.agents[0], initial))
    blob[len(blob) // 2] ^= 0xFF
    with pytest.raises(RecordingDamaged, match="run 1 episode 1 agent 0: the recording is damaged"):
        decode_agent(bytes(blob), 0, initial, "run 1 episode 1 agent 0")
    newer = b"TLR\x09" + bytes(blob[4:])
    with pytest.raises(RecordingDamaged, match="format 9, newer than this townlet reads"):
        decode_agent(newer, 0, initial, "x")
    assert issubclass(RecordingDamaged, TelemetryError)


def frames(steps: int = 3, agents: int = 2) -> torch.Tensor:
    out = torch.zeros(steps + 1, agents, len(FRAME_COLUMNS))
    out[1:, :, FRAME_COLUMNS.index("acting")] = 1
    out[steps, :, FRAME_COLUMNS.index("cause")] = -2
    return out


def build(tensor: torch.Tensor) -> EpisodeRecording:
    return recording_from_frames(
        tensor, agents=[0, 5], episode=1, reasons=["asked"], grid_size=8, max_steps=200, stage=1,
        active_meters=["energy"], depletion=[0.01, 0, 0, 0], q_values=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("column", "value", "error", "named"),
    [
        ("meter_hygiene", float("nan"), TelemetryLeakError, "recording.agents[5].steps[2].meter_hygiene: non-finite"),
        ("row", 8.0, SnapshotValidationError, "recording.agents[5].steps[2].row: 8 is outside [0, 7]"),
        ("action", 7.0, SnapshotValidationError, "recording.agents[5].steps[2].action: 7 is outside [0, 4]"),
        ("reward", float("inf"), TelemetryLeakError, "recording.agents[5].steps[2].reward: non-finite"),
    ],
)
def test_the_choke_point_refuses_a_bad_value_naming_agent_step_and_field(column, value, error, named):
    good = build(frames())
    assert [a.steps for a in good.agents] == [3, 3] and good.header.agents == (0, 5)
    bad = frames()
    bad[2, 1, FRAME_COLUMNS.index(column)] = value
    with pytest.raises(error, match=named.replace("[", r"\[").replace("]", r"\]")):
        build(bad)


def test_recorded_agents_are_all_up_to_the_cap_spread_evenly_or_the_chosen_ones():
    assert recorded_agents(RecordingConfig(), 8) == list(range(8))
    spread = recorded_agents(RecordingConfig(max_agents=4), 1024)
    assert spread == [0, 256, 512, 768]
    assert recorded_agents(RecordingConfig(agents=(7, 2)), 8) == [2, 7]


def test_recording_does_not_change_training():
    config = with_overrides(load_config(), "training", agents=4, episodes=3, seed=2, device="cpu")
    on = [Trainer(every_episode(config), torch.device("cpu")).run_episode(e).snapshot for e in (1,)]
    off_config = dataclasses.replace(config, recording=RecordingConfig(enabled=False))
    off = Trainer(off_config, torch.device("cpu")).run_episode(1)
    assert off.recording is None
    assert on[0] == off.snapshot
