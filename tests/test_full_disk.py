"""A full disk is one line, never a traceback: a real, small filesystem (tmpfs) that fills up under the command.

Each scenario runs in a mount namespace of its own (``unshare --mount --map-root-user``: no root needed where
user namespaces are allowed), with a tmpfs of a few MB mounted over a directory of the test's; a driver script
inside it runs the real commands and reports what it saw as JSON.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import trained
from townlet.persistence.errors import FAULT_WORDS, DatabaseRetryable

runner = CliRunner()

PRELUDE = """
import json, os, signal, sqlite3, subprocess, sys, time
disk = sys.argv[1]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + sys.argv[2], "tmpfs", disk], check=True)
def townlet(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "townlet_cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "250"}, **kwargs)
def stored(db):
    try:
        connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return [e for (e,) in connection.execute("SELECT episode FROM episodes ORDER BY episode")]
        finally:
            connection.close()
    except sqlite3.Error:
        return None
"""


def on_a_small_disk(tmp_path: Path, size: str, script: str) -> dict:
    disk = tmp_path / "disk"
    disk.mkdir()
    driver = tmp_path / "driver.py"
    driver.write_text(PRELUDE + textwrap.dedent(script))
    done = subprocess.run(
        ["unshare", "--mount", "--map-root-user", sys.executable, str(driver), str(disk), size],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_driver_words_of_a_full_disk_read_disk_full():
    from townlet.persistence.errors import fault_state

    assert fault_state("database or disk is full") == "full"
    assert fault_state("disk I/O error") == "failing"
    assert fault_state("database is locked") == "busy"
    assert FAULT_WORDS[DatabaseRetryable("x", state=fault_state("database or disk is full")).state][0] == "disk full"


@pytest.mark.slow
def test_ctrl_c_of_a_trainer_waiting_on_a_full_disk_is_one_line_and_keeps_what_committed(tmp_path):
    seen = on_a_small_disk(
        tmp_path,
        "3m",
        """
        db = os.path.join(disk, "t.db")
        proc = townlet("train", "--episodes", "100000", "--agents", "2", "--device", "cpu", "--db", db)
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if "training waits: " in line or not line:
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        print(json.dumps({"rc": proc.returncode, "out": out, "err": "".join(lines) + err, "stored": stored(db)}))
        """,
    )
    out, err = seen["out"], seen["err"]
    assert out == ""  # train says everything on stderr
    assert "training waits: disk full, " in err and "retrying (database or disk is full)" in err, err[-3000:]
    assert seen["rc"] == 130, err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert lines[-1].startswith("interrupted by Ctrl-C: run 1 "), err
    assert err.count("interrupted by") == 1 and "error:" not in err, err
    assert "episodes could not be written (the disk stayed full)" in err
    stored = seen["stored"]
    assert stored and stored == list(range(1, len(stored) + 1))  # what committed is all there
    assert f"{len(stored)} episodes written" in lines[-1]


@pytest.fixture(scope="module")
def wide(tmp_path_factory) -> Path:
    return trained(tmp_path_factory.mktemp("wide") / "src.db", episodes=12, agents=512)


@pytest.mark.slow
def test_db_copy_onto_a_full_disk_is_one_error_line_and_leaves_the_source_alone(tmp_path, wide):
    before = wide.read_bytes()
    seen = on_a_small_disk(
        tmp_path,
        "1m",
        f"""
        proc = townlet("db", "copy", {str(wide)!r}, os.path.join(disk, "dst.db"))
        out, err = proc.communicate(timeout=120)
        print(json.dumps({{"rc": proc.returncode, "out": out, "err": err}}))
        """,
    )
    err = seen["err"]
    assert seen["rc"] == 2, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if not line.startswith("note: ")]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "database or disk is full" in errors[0], err
    assert wide.read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize(
    "args", [["export", "--format", "csv"], ["export", "--format", "jsonl"], ["episodes", "--json"], ["runs"]]
)
def test_output_redirected_onto_a_full_disk_is_one_line_exit_2(wide, args):
    with open("/dev/full", "w") as full:  # every write fails with ENOSPC, as on a full disk
        done = subprocess.run(
            [sys.executable, "-m", "townlet_cli", *args, "--db", str(wide)],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: cannot write standard output (No space left on device)")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_out_onto_a_full_disk_is_one_line_and_leaves_no_file(tmp_path, wide, fmt):
    seen = on_a_small_disk(
        tmp_path,
        "16k",
        f"""
        proc = townlet("export", "--db", {str(wide)!r}, "--format", {fmt!r}, "--out", os.path.join(disk, "o.{fmt}"))
        out, err = proc.communicate(timeout=120)
        print(json.dumps({{"rc": proc.returncode, "out": out, "err": err, "left": os.listdir(disk)}}))
        """,
    )
    err = seen["err"]
    assert seen["rc"] == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "No space left on device" in err, err
    assert seen["left"] == []  # the partial file is removed; nothing half-written at --out
