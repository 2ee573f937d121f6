"""``townlet-telemetry serve`` as a process: it refuses what it cannot serve in one line, before listening."""

import shutil
import socket
import sqlite3
import subprocess
import sys
import urllib.request

import pytest
from typer.testing import CliRunner

from tests.helpers import free_port, v1_copy, wait_for
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
    path = tmp_path_factory.mktemp("serve") / "t.db"
    result = runner.invoke(app, ["train", "--episodes", "2", "--agents", "2", "--device", "cpu", "--db", str(path)])
    assert result.exit_code == 0, result.output
    return path


def test_a_missing_database_is_refused_and_not_created(tmp_path):
    refused(["--db", str(tmp_path / "none.db")], f"no database at {tmp_path / 'none.db'}")
    assert list(tmp_path.iterdir()) == []


def test_an_older_database_is_refused_naming_the_upgrade(tmp_path):
    db = v1_copy(tmp_path)
    refused(
        ["--db", str(db)],
        "database is at revision 0001 (schema 1), this townlet needs revision 0003 (schema 2)",
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
    warning = proc.stdout.readline()
    assert "unauthenticated" in warning and "0.0.0.0" in warning
    assert f"on http://0.0.0.0:{port}" in proc.stdout.readline()

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    wait_for(answers, "the dashboard answering", timeout=60)
    proc.send_signal(2)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err


def test_a_newer_database_is_refused_naming_the_upgrade_of_townlet(db, tmp_path):
    newer = tmp_path / "newer.db"
    shutil.copy(db, newer)
    with sqlite3.connect(newer) as connection:
        connection.execute(f"UPDATE {VERSION_TABLE} SET version_num = '0099'")
    refused(["--db", str(newer)], "database is at revision 0099, newer than this townlet", "upgrade townlet")
