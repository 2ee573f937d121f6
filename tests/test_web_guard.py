"""The dashboard checks who is asking: the Host rule against DNS rebinding, and bounded connections.

A real ``serve`` process and raw sockets, as a browser on a rebinding page or a flood would use them.
"""

import contextlib
import http.client
import resource
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from tests.helpers import free_port, serve, trained, wait_for
from townlet.web.guard import HEADER_TIMEOUT_S, MAX_CONNECTIONS, allowed_hosts, host_name

runner = CliRunner()


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return trained(tmp_path_factory.mktemp("guard") / "t.db", episodes=2, agents=2)


@contextlib.contextmanager
def serving(db, *args: str) -> Iterator[tuple[int, subprocess.Popen]]:
    port = free_port()
    proc = serve(db, port, *args)
    try:
        wait_for(lambda: status(port, "127.0.0.1") == 200, "the dashboard answering", timeout=60)
        yield port, proc
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def status(port: int, host: str, path: str = "/api/runs") -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=True)
        connection.putheader("Host", host)
        connection.endheaders()
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def test_host_names_keep_their_meaning_without_the_port():
    assert host_name("Example.ORG:8000") == "example.org"
    assert host_name("[::1]:8000") == "::1" and host_name("::1") == "::1"
    assert "lab.example" in allowed_hosts("127.0.0.1", ["Lab.Example"])
    assert socket.gethostname().lower() in allowed_hosts("0.0.0.0")
    assert socket.gethostname().lower() not in allowed_hosts("127.0.0.1")


@pytest.mark.slow
def test_a_rebinding_page_s_host_is_refused_and_loopback_addresses_and_allowed_names_are_answered(db):
    with serving(db, "--allow-host", "lab.example") as (port, _):
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "10.1.2.3", f"LAB.example:{port}"):
            assert status(port, host) == 200, host
        for host in (f"evil.example:{port}", "evil.example", "localhost.evil.example", ""):
            for path in ("/api/runs", "/", "/static/app.js", "/api/no-such"):
                assert status(port, host, path) == 421, (host, path)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.putrequest("GET", "/api/runs/1", skip_host=True)
        connection.putheader("Host", f"evil.example:{port}")
        connection.endheaders()
        response = connection.getresponse()
        body = response.read().decode()
        connection.close()
        assert body.count("\n") == 1 and "--allow-host evil.example" in body and "run" not in body.split(":")[0]


def _half_request(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
    return sock


def _closed_by_server(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.slow
def test_slow_request_heads_are_cut_off_and_a_real_request_is_answered_meanwhile(db):
    with serving(db) as (port, _):
        slow = [_half_request(port) for _ in range(40)]
        silent = socket.create_connection(("127.0.0.1", port))  # connects and sends nothing at all
        try:
            assert status(port, "127.0.0.1") == 200  # a real request is not kept waiting by them
            started = time.monotonic()
            for sock in [*slow, silent]:
                assert _closed_by_server(sock, HEADER_TIMEOUT_S * 3), "a slow request head was kept open"
            assert time.monotonic() - started >= HEADER_TIMEOUT_S / 2  # cut off by the deadline, not at once
        finally:
            for sock in [*slow, silent]:
                sock.close()


@pytest.mark.slow
def test_a_connection_flood_beyond_the_cap_evicts_the_oldest_waiting_ones_and_a_real_request_gets_through(db):
    with serving(db) as (port, _):
        flood = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_CONNECTIONS + 40)]
        try:
            assert status(port, "127.0.0.1") == 200
            oldest = [_closed_by_server(sock, 2.0) for sock in flood[:40]]
            assert all(oldest), f"{oldest.count(False)} of the 40 oldest flood connections still open"
            assert not _closed_by_server(flood[-1], 0.5)  # the newest wait for their own deadline
        finally:
            for sock in flood:
                sock.close()


@pytest.mark.slow
def test_a_failing_accept_in_a_flood_logs_one_line_per_ten_seconds(db, processes):
    port = free_port()
    proc = serve(db, port)
    processes.append(proc)
    wait_for(lambda: status(port, "127.0.0.1") == 200, "the dashboard answering", timeout=60)
    soft, hard = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (64, hard))  # out of descriptors after ~50 connections
    flood: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:  # accept() fails with EMFILE again and again, about once a second
            with contextlib.suppress(OSError):
                flood.append(socket.create_connection(("127.0.0.1", port), timeout=0.2))
            time.sleep(0.02)
    finally:
        for sock in flood:
            sock.close()
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (soft, hard))
    wait_for(lambda: status(port, "127.0.0.1") == 200, "the dashboard answering again", timeout=60)
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    assert 1 <= err.count("socket.accept() out of system resource") <= 1, err[-2000:]
