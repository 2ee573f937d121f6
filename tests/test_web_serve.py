"""``townlet-telemetry serve`` as a process: it refuses what it cannot serve in one line, before listening."""

import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from typer.testing import CliRunner

from tests.helpers import answers, free_port, serve, trained, v1_copy, wait_for
from townlet.persistence.revisions import VERSION_TABLE
from townlet_cli.app import app

runner = CliRunner()


def refused(args: list[str], *fragments: str) -> None:
    result = runner.invoke(app, ["serve", *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return trained(tmp_path_factory.mktemp("serve") / "t.db", episodes=2, agents=2)


def test_a_missing_database_is_refused_and_not_created(tmp_path):
    refused(["--db", str(tmp_path / "none.db")], f"no database at {tmp_path / 'none.db'}")
    assert list(tmp_path.iterdir()) == []


def test_an_older_database_is_refused_naming_the_upgrade(tmp_path):
    db = v1_copy(tmp_path)
    refused(
        ["--db", str(db)],
        "database is at revision 0001 (schema 1), this townlet needs revision 0007 (schema 2)",
        "db upgrade",
    )


def test_a_foreign_database_is_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY)")
    refused(["--db", str(path)], "is not a townlet database")


def test_a_busy_port_is_refused(db):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        refused(["--db", str(db), "--port", str(busy.getsockname()[1])], "cannot serve on 127.0.0.1:", "--port")


def test_a_bad_live_url_is_refused(db):
    refused(["--db", str(db), "--live", "http://example"], "is not a websocket URL")


@pytest.mark.slow
def test_it_serves_until_ctrl_c_and_warns_when_reachable_from_other_machines(db, processes):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "townlet_cli", "serve", "--db", str(db), "--host", "0.0.0.0", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    processes.append(proc)
    warning = proc.stderr.readline()
    assert "unauthenticated" in warning and "0.0.0.0" in warning
    assert f"on http://0.0.0.0:{port}" in proc.stderr.readline()

    wait_for(lambda: answers(f"http://127.0.0.1:{port}/api/runs"), "the dashboard answering", timeout=60)
    proc.send_signal(2)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out == "" and "stopped" in err and "Traceback" not in err


def test_a_newer_database_is_refused_naming_the_upgrade_of_townlet(db, tmp_path):
    newer = tmp_path / "newer.db"
    shutil.copy(db, newer)
    with sqlite3.connect(newer) as connection:
        connection.execute(f"UPDATE {VERSION_TABLE} SET version_num = '0099'")
    refused(["--db", str(newer)], "database is at revision 0099, newer than this townlet", "upgrade townlet")


@pytest.fixture(scope="module")
def wide_db(tmp_path_factory):
    """Enough agent rows that a run-wide answer takes a while: requests are in flight when the signal comes."""
    return trained(tmp_path_factory.mktemp("serve-wide") / "t.db", episodes=6, agents=512)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "said"),
    [(signal.SIGTERM, "stopped (SIGTERM)"), (signal.SIGINT, "stopped (Ctrl-C)")],
    ids=["TERM", "INT"],
)
def test_a_stop_signal_with_requests_in_flight_answers_them_and_logs_no_traceback(wide_db, processes, signum, said):
    port = free_port()
    proc = serve(wide_db, port)
    processes.append(proc)
    statuses: list[int] = []
    stop = threading.Event()

    def ask() -> None:
        paths = ["/api/runs/1/flags", "/api/runs/1/rewards", "/api/runs/1/episodes", "/api/runs/1/heatmap"]
        i = 0
        while not stop.is_set():
            path = paths[i % len(paths)] + f"?nocache={i}"
            i += 1
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
                    statuses.append(response.status)
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
            except OSError:  # not listening (yet, or any more)
                time.sleep(0.05)

    askers = [threading.Thread(target=ask, daemon=True) for _ in range(6)]
    for asker in askers:
        asker.start()
    wait_for(lambda: len(statuses) >= 12, "the dashboard answering", timeout=60)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    stop.set()
    for asker in askers:
        asker.join(30)
    assert proc.returncode == 0, err
    assert out == "" and said in err
    assert "Traceback" not in err and "ERROR" not in err, err
    assert set(statuses) == {200}, sorted(set(statuses))
