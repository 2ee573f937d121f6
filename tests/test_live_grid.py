# ruff: noqa: F811 - the broadcaster fixture imported from test_live_stream is used as a test argument
"""The live grid: ``grid_frame`` messages go only to clients that subscribe (an older client's stream is what it
always was), at most ``recording.live_fps`` a second, never while nobody watches; a slow subscriber loses the
oldest frames, counted; ``watch --grid`` draws them from a real ``train --live``."""

import json
import subprocess
import sys
import time

import pytest

from tests.helpers import finished_registry, free_port, wait_for
from tests.test_live_stream import _connect, broadcaster  # noqa: F401
from townlet.config import load_config, with_overrides
from townlet.telemetry.frames import FramePublisher
from townlet.telemetry.live import FRAME_QUEUE
from townlet.telemetry.payloads import SUBSCRIBE_FRAMES, decode, episode_envelope, grid_frame
from townlet.training.loop import Trainer


def frame(n: int) -> dict:
    return grid_frame("run-x", n, 1, n, 1, 8, [("bed", 2, 2)], ("energy",), [0], [1], [2], [True], [[0.5]])


def test_only_subscribers_receive_frames_and_the_others_stream_is_unchanged(broadcaster):
    with _connect(broadcaster.url) as old, _connect(broadcaster.url) as grid:
        assert decode(old.recv(timeout=5))["kind"] == decode(grid.recv(timeout=5))["kind"] == "hello"
        grid.send(SUBSCRIBE_FRAMES)
        wait_for(lambda: broadcaster.frame_subscribers == 1, "the subscription", timeout=10)
        broadcaster.publish_frame(frame(1))
        envelope = episode_envelope("run-x", 1, finished_registry(2).snapshot())
        broadcaster.publish(envelope)
        kinds = {decode(grid.recv(timeout=5))["kind"] for _ in range(2)}
        assert kinds == {"grid_frame", "episode_snapshot"}
        assert decode(old.recv(timeout=5))["kind"] == "episode_snapshot"  # no frame ever reached it
        with pytest.raises(TimeoutError):
            old.recv(timeout=0.3)
    wait_for(lambda: broadcaster.frame_subscribers == 0, "the subscriber gone", timeout=10)


def test_a_slow_subscriber_loses_the_oldest_frames_counted_and_sees_the_gap(broadcaster):
    with _connect(broadcaster.url) as grid:
        grid.recv(timeout=5)
        grid.send(SUBSCRIBE_FRAMES)
        wait_for(lambda: broadcaster.frame_subscribers == 1, "the subscription", timeout=10)
        for n in range(1, 101):
            broadcaster.publish_frame(frame(n))
        got = []
        while True:
            try:
                got.append(decode(grid.recv(timeout=1))["frame"])
            except TimeoutError:
                break
    assert got[-1] == 100 and len(got) >= FRAME_QUEUE  # the newest always arrives
    assert broadcaster.frames_dropped == 100 - len(got)  # what it missed is counted; the numbers show the gap
    assert got == sorted(got)


class Sink:
    def __init__(self, subscribers: int) -> None:
        self.frame_subscribers = subscribers
        self.frames: list[dict] = []

    def publish_frame(self, message: dict) -> None:
        self.frames.append(message)


def test_frames_are_rate_limited_and_never_built_while_nobody_watches():
    config = with_overrides(load_config(), "training", agents=3, episodes=1, seed=0, device="cpu")
    trainer = Trainer(config)
    nobody = Sink(0)
    trainer.frames = FramePublisher(nobody, "run-x", trainer.recorded_agents, 8, fps=10)
    trainer.run_episode(1)
    assert nobody.frames == []
    watched = Sink(1)
    trainer.frames = FramePublisher(watched, "run-x", trainer.recorded_agents, 8, fps=1000)
    started = time.monotonic()
    report = trainer.run_episode(2)
    elapsed = time.monotonic() - started
    assert 1 <= len(watched.frames) <= min(report.steps, 1000 * elapsed + 1)
    last = watched.frames[-1]
    assert last["episode"] == 2 and last["agents"] == [0, 1, 2] and last["grid_size"] == 8
    assert all(0 <= v < 8 for v in last["rows"] + last["cols"])
    assert [f["frame"] for f in watched.frames] == list(range(1, len(watched.frames) + 1))
    slow = Sink(1)
    trainer.frames = FramePublisher(slow, "run-x", trainer.recorded_agents, 8, fps=0.001)
    trainer.run_episode(3)
    assert len(slow.frames) == 1  # the first step's, then none within the interval


@pytest.mark.slow
def test_watch_grid_draws_frames_of_a_real_trainer_and_watch_json_gets_only_envelopes(tmp_path, processes):
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    trainer = subprocess.Popen(
        [sys.executable, "-m", "townlet_cli", "train", "--episodes", "8", "--agents", "3", "--device", "cpu",
         "--db", str(tmp_path / "t.db"), "--live", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    processes.append(trainer)
    command = [sys.executable, "-m", "townlet_cli", "watch", url, "--count", "2", "--timeout", "20"]
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    watchers = [subprocess.Popen([*command, extra], **pipes) for extra in ("--grid", "--json")]
    processes.extend(watchers)
    (grid_out, grid_err), (json_out, _) = (w.communicate(timeout=120) for w in watchers)
    assert [w.returncode for w in watchers] == [0, 0], grid_err
    frames = [f for f in grid_out.split("\n\n") if "live · run 1" in f]
    assert frames, grid_out
    lines = frames[-1].strip("\n").splitlines()
    assert len(lines[0].split()) == 8 and "B" in lines[2]  # the 8x8 grid, the bed at row 2
    assert "agent 0 followed" in lines[-1] and "missed" in lines[-1]
    assert "run 1 episode " in grid_err and "grid frames" in grid_err  # episodes: one line each on stderr
    kinds = {json.loads(line)["kind"] for line in json_out.splitlines()}
    assert kinds == {"episode_snapshot"}  # a client that never asks gets no frame
    _, said = trainer.communicate(timeout=120)
    assert "live grid:" in said and "frames" in said


def test_a_frame_with_a_bad_meter_is_refused_naming_it_and_grid_with_json_is_one_line():
    from typer.testing import CliRunner

    from townlet.environment.grid import VectorizedGridEnv
    from townlet.telemetry.dto import TelemetryLeakError
    from townlet_cli.app import app

    env = VectorizedGridEnv(2)
    env.reset()
    env.meters[1, 0] = float("nan")
    publisher = FramePublisher(Sink(1), "run-x", [0, 1], 8, fps=10)
    with pytest.raises(TelemetryLeakError, match=r"agents\[1\]\.meter_energy: non-finite"):
        publisher.offer(env, 1, 1, 1)
    result = CliRunner().invoke(app, ["watch", "ws://127.0.0.1:9", "--grid", "--json", "--timeout", "0"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "--grid draws the grid" in result.stderr
