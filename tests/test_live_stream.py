"""The live stream on real loopback websockets: train --live, slow clients, and watch."""

import io
import json
import signal
import subprocess
import sys
import threading
import time

import pytest
from rich.console import Console
from typer.testing import CliRunner
from websockets.sync.client import connect

from tests.helpers import finished_registry, free_port
from townlet.telemetry.dto import FIELD_NAMES, SCHEMA_VERSION, AgentTelemetrySnapshotV1
from townlet.telemetry.live import LiveStreamError, WebSocketBroadcaster, parse_address
from townlet.telemetry.payloads import decode, envelope_from_snapshots, episode_envelope, hello_message
from townlet_cli.app import app
from townlet_cli.watch import episode_view


def _connect(url: str, attempts: int = 100):
    for _ in range(attempts):
        try:
            return connect(url, open_timeout=5, close_timeout=1, compression=None, max_size=None)
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"could not connect to {url}")


@pytest.fixture
def broadcaster():
    server = WebSocketBroadcaster("127.0.0.1", 0, queue_size=8, hello=hello_message("run-x", 4)).start()
    yield server
    server.close(drain_timeout=0.5)


def test_client_receives_hello_then_every_envelope(broadcaster):
    with _connect(broadcaster.url) as client:
        hello = decode(client.recv(timeout=5))
        assert hello == {
            "schema_version": SCHEMA_VERSION,
            "kind": "hello",
            "run_id": "run-x",
            "run": None,
            "num_agents": 4,
        }
        envelopes = [episode_envelope("run-x", e, finished_registry(4).snapshot()) for e in (1, 2, 3)]
        for envelope in envelopes:
            broadcaster.publish(envelope)
        received = [decode(client.recv(timeout=5)) for _ in envelopes]
    assert received == [json.loads(json.dumps(e)) for e in envelopes]
    assert broadcaster.dropped == 0


def test_a_client_that_never_reads_never_blocks_publish(broadcaster):
    big = episode_envelope("run-x", 1, finished_registry(1024).snapshot())  # ~350 kB a message
    with _connect(broadcaster.url) as _stalled, _connect(broadcaster.url) as reader:  # _stalled never reads
        reader.recv(timeout=5)  # hello
        time.sleep(0.2)  # both clients are registered
        published = 200  # ~70 MB for the stalled client: far beyond any socket buffer
        for episode in range(1, published + 1):
            broadcaster.publish({**big, "episode": episode})
        last = None
        while last is None or last["episode"] < published:
            last = decode(reader.recv(timeout=30))
    assert broadcaster.published == published
    assert broadcaster.dropped > 0  # the stalled client lost its oldest envelopes, training lost nothing
    assert last["episode"] == published  # the reading client got the newest one


def test_a_port_in_use_is_a_one_line_error(broadcaster):
    with pytest.raises(LiveStreamError, match=rf"cannot serve live telemetry on 127.0.0.1:{broadcaster.port}"):
        WebSocketBroadcaster("127.0.0.1", broadcaster.port).start()


@pytest.mark.parametrize("address", ["8765", "localhost", "host:port", ":8765", "127.0.0.1:99999"])
def test_bad_live_address_names_the_fix(address):
    with pytest.raises(LiveStreamError, match=r"use e\.g\. --live 127\.0\.0\.1:8765"):
        parse_address(address)


def test_ipv6_address_parses():
    assert parse_address("[::1]:9000") == ("::1", 9000)


@pytest.mark.slow
def test_train_live_streams_valid_envelopes_to_a_real_client(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "townlet_cli", "train", "--episodes", "1000", "--agents", "3", "--device", "cpu",
         "--live", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        with _connect(f"ws://127.0.0.1:{port}") as client:
            hello = decode(client.recv(timeout=30))
            envelopes = [decode(client.recv(timeout=30)) for _ in range(5)]
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert hello["kind"] == "hello" and hello["num_agents"] == 3
    episodes = [e["episode"] for e in envelopes]
    assert episodes == list(range(episodes[0], episodes[0] + 5))
    for envelope in envelopes:
        assert envelope["run_id"] == hello["run_id"]
        assert len(envelope["agents"]) == 3
        json.dumps(envelope, allow_nan=False)
    assert out == "" and "live stream:" in err and "dropped for slow clients" in err


def _publish_until(stop: threading.Event, server: WebSocketBroadcaster) -> None:
    episode = 0
    while not stop.is_set():
        episode += 1
        server.publish({"schema_version": 99, "kind": "episode_snapshot", "run_id": "future", "episode": 0})
        server.publish(episode_envelope("run-x", episode, finished_registry(3).snapshot()))
        time.sleep(0.05)


def test_watch_shows_known_versions_and_refuses_unknown_ones(broadcaster):
    stop = threading.Event()
    publisher = threading.Thread(target=_publish_until, args=(stop, broadcaster))
    publisher.start()
    try:
        result = CliRunner().invoke(app, ["watch", broadcaster.url, "--count", "2"], env={"COLUMNS": "200"})
    finally:
        stop.set()
        publisher.join()
    assert result.exit_code == 0, result.output
    assert f"connected to run run-x (4 agents, schema v{SCHEMA_VERSION})" in result.stderr
    assert "refused a message: telemetry schema_version 99 is not one this townlet reads (1, 2): upgrade townlet" in (
        result.stderr
    )
    assert "baseline" in result.stdout and "refused" not in result.stdout  # stdout: the episodes only
    assert "watched 2 episodes" in result.stderr


def _rendered(envelope: dict) -> str:
    console = Console(record=True, width=250, file=io.StringIO())
    console.print(episode_view(envelope, max_rows=8))
    return console.export_text()


def test_watch_table_shows_the_v2_fields_and_still_shows_a_v1_envelope():
    v2 = episode_envelope("run-x", 3, finished_registry(3).snapshot())
    v1_agents = [
        AgentTelemetrySnapshotV1.from_dict({k: a[k] for k in FIELD_NAMES[AgentTelemetrySnapshotV1]})
        for a in v2["agents"]
    ]
    v1 = envelope_from_snapshots("run-x", 3, v1_agents)
    assert (v1["schema_version"], v2["schema_version"]) == (1, 2)
    shown_v2, shown_v1 = _rendered(v2), _rendered(v1)
    assert "schema v2" in shown_v2 and "entropy" in shown_v2 and "visits: bed shower fridge job" in shown_v2
    assert "schema v1" in shown_v1 and "every agent: baseline 100.00" in shown_v1 and "survival" in shown_v1
    assert "entropy" not in shown_v1 and "visits" not in shown_v1


def test_watch_without_a_server_is_a_one_line_error_after_the_timeout():
    result = CliRunner().invoke(app, ["watch", f"ws://127.0.0.1:{free_port()}", "--timeout", "0"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot connect to ws://127.0.0.1:")
    assert "townlet-telemetry train --live" in result.stderr and "--timeout" in result.stderr
    assert result.stderr.count("\n") == 1


def test_watch_refuses_a_non_websocket_url():
    result = CliRunner().invoke(app, ["watch", "http://example"])
    assert result.exit_code == 2
    assert "is not a websocket URL" in result.stderr
