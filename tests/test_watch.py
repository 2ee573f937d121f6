"""``watch`` as a user runs it: before the trainer, across a restart, piped, as JSON lines, and stopped by Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.helpers import finished_registry, free_port
from townlet.telemetry.live import WebSocketBroadcaster
from townlet.telemetry.payloads import episode_envelope, hello_message
from townlet_cli.app import app

WATCH = [sys.executable, "-m", "townlet_cli", "watch"]


def _watch(url: str, *extra: str, cwd: Path, sigint_ignored: bool = False) -> subprocess.Popen:
    """``watch URL EXTRA`` as a real process; ``sigint_ignored`` starts it with SIGINT ignored, as a parent that
    ignores it (a script's background job, some libraries' worker processes) passes that on through exec."""
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
    return subprocess.Popen([*WATCH, url, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd, env={**os.environ, "COLUMNS": "200"}, preexec_fn=ignore)  # fmt: skip


def _serve(port: int, run: int, episodes: range) -> WebSocketBroadcaster:
    """A trainer's stream: hello, then an envelope every 50 ms until the watcher has had time to read them."""
    server = WebSocketBroadcaster("127.0.0.1", port, hello=hello_message(f"uuid-{run}", 3, run)).start()
    return server


def _publish(server: WebSocketBroadcaster, episodes: range, run: int, until: float) -> None:
    """Publish the episodes once a client is connected (a watcher may connect a moment after binding)."""
    while server.clients_served == 0:
        assert time.monotonic() < until, "watch never connected"
        time.sleep(0.05)
    time.sleep(0.3)
    for episode in episodes:
        server.publish(episode_envelope(f"uuid-{run}", episode, finished_registry(3).snapshot()))


@pytest.mark.slow
def test_watch_started_before_the_trainer_waits_then_follows_it_across_a_restart(tmp_path, processes):
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    proc = _watch(url, "--count", "4", "--timeout", "60", cwd=tmp_path)
    processes.append(proc)
    time.sleep(1.0)  # nothing listens yet
    first = _serve(port, 7, range(1, 3))
    _publish(first, range(1, 3), 7, time.monotonic() + 60)
    time.sleep(0.5)
    first.close()  # the trainer stops ...
    time.sleep(1.0)
    second = _serve(port, 7, range(3, 5))  # ... and is resumed on the same address
    try:
        _publish(second, range(3, 5), 7, time.monotonic() + 60)
        out, err = proc.communicate(timeout=60)
    finally:
        second.close()
    assert proc.returncode == 0, err
    assert f"waiting for the trainer at {url}" in err
    assert err.count("connected to run 7 (uuid-7, 3 agents") == 2
    lines = out.splitlines()  # stdout: the episodes, nothing else
    assert all(line.startswith("run 7 episode") for line in lines)
    assert [int(line.split()[3].rstrip(":")) for line in lines] == [1, 2, 3, 4]
    assert "went away" in err
    assert err.rstrip().splitlines()[-1] == f"watched 4 episodes of run 7 from {url}"


@pytest.mark.slow
def test_watch_json_lines_are_byte_identical_to_replay_json_of_a_real_run(tmp_path, processes):
    port = free_port()
    db = tmp_path / "t.db"
    watcher = _watch(f"ws://127.0.0.1:{port}", "--json", "--count", "3", "--timeout", "120", cwd=tmp_path)
    processes.append(watcher)
    trainer = subprocess.Popen(
        [sys.executable, "-m", "townlet_cli", "train", "--episodes", "100000", "--agents", "3", "--device", "cpu",
         "--db", str(db), "--live", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    processes.append(trainer)
    out, err = watcher.communicate(timeout=180)
    trainer.send_signal(signal.SIGINT)
    trainer.communicate(timeout=180)
    assert watcher.returncode == 0, err
    assert trainer.returncode == 130
    lines = out.encode().splitlines()
    assert len(lines) == 3
    runner = CliRunner()
    episodes = [json.loads(line)["episode"] for line in lines]
    assert episodes == list(range(episodes[0], episodes[0] + 3))
    for episode, line in zip(episodes, lines, strict=True):
        replayed = runner.invoke(app, ["replay", "--episode", str(episode), "--json", "--db", str(db)])
        assert replayed.exit_code == 0, replayed.output
        assert replayed.stdout_bytes.rstrip(b"\n") == line
    assert "connected to run 1 (" in err and "watched 3 episodes of run 1" in err


@pytest.mark.slow
@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["plain", "started-with-sigint-ignored"])
def test_ctrl_c_ends_watch_with_a_one_line_summary_and_exit_0(tmp_path, processes, sigint_ignored):
    port = free_port()
    proc = _watch(f"ws://127.0.0.1:{port}", "--timeout", "600", cwd=tmp_path, sigint_ignored=sigint_ignored)
    processes.append(proc)
    assert "waiting for the trainer" in proc.stderr.readline()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out == ""
    assert err.strip().splitlines()[-1] == f"watched 0 episodes of runs none from ws://127.0.0.1:{port}"
    assert "Traceback" not in err


@pytest.fixture
def stream():
    server = WebSocketBroadcaster("127.0.0.1", 0, hello=hello_message("uuid-1", 2, 1)).start()
    yield server
    server.close(drain_timeout=0.2)


def test_a_page_from_another_site_cannot_open_the_stream(stream):
    with pytest.raises(InvalidStatus) as refused:
        connect(stream.url, origin="https://evil.example", open_timeout=5)
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("origin", [None, "http://127.0.0.1:8000", "http://localhost:3000"])
def test_the_cli_and_pages_served_from_this_machine_may_open_the_stream(stream, origin):
    with connect(stream.url, origin=origin, open_timeout=5) as client:
        assert json.loads(client.recv(timeout=5))["run"] == 1
