"""stdout carries only a command's answer; everything else goes to stderr. And `train` run as a batch job runs:
its log (stderr not a terminal) gets one plain line per --log-every episodes, counted in the run's episodes.

Every command runs as a real process with stdout and stderr captured apart (neither a terminal).
"""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from itertools import pairwise
from pathlib import Path

import pytest

from tests.helpers import answers, free_port, townlet, wait_for

LOG_LINE = re.compile(
    r"^episode (\d+)/(\d+) survival [\d.]+ baseline [\d.]+ epsilon [\d.]+ stage (\d+) \d+:\d\d:\d\d$", re.M
)


@pytest.fixture(scope="module")
def log_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """30 episodes of 8 agents trained by `train --log-every 7`, its stdout and stderr apart."""
    db = tmp_path_factory.mktemp("streams") / "t.db"
    done = townlet("train", "--episodes", "30", "--agents", "8", "--seed", "0", "--device", "cpu", "--db", str(db),
                   "--log-every", "7")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return db, done


def _stages(db: Path) -> list[tuple[int, int]]:
    with closing(sqlite3.connect(db)) as connection:
        return connection.execute("SELECT episode, curriculum_stage FROM episodes ORDER BY episode").fetchall()


def test_train_says_everything_on_stderr_and_nothing_on_stdout(log_run):
    _, done = log_run
    assert done.stdout == ""
    assert done.stderr.startswith("training 8 agents for 30 episodes on cpu")
    assert "training summary" in done.stderr and "run 1 finished: 30 episodes written" in done.stderr


def test_a_log_gets_a_line_every_log_every_episodes_and_the_first_and_last(log_run):
    _, done = log_run
    logged = [(int(m[1]), int(m[2])) for m in LOG_LINE.finditer(done.stderr)]
    assert logged == [(e, 30) for e in (1, 7, 14, 21, 28, 30)]
    assert not re.search(r"^episode .*━", done.stderr, re.M)  # no progress bar frames in a log


def test_a_log_line_names_the_stage_the_episode_ran_at(log_run):
    db, done = log_run
    stages = dict(_stages(db))
    for match in LOG_LINE.finditer(done.stderr):
        assert int(match[3]) == stages[int(match[1])]


def test_a_resume_counts_the_runs_episodes_not_the_sessions(log_run, tmp_path):
    db = tmp_path / "t.db"
    db.write_bytes(log_run[0].read_bytes())
    done = townlet("train", "--resume", "1", "--episodes", "3", "--db", str(db), "--log-every", "1")
    assert done.returncode == 0, done.stderr
    assert [(int(m[1]), int(m[2])) for m in LOG_LINE.finditer(done.stderr)] == [(31, 33), (32, 33), (33, 33)]


def test_the_default_logs_every_episode_of_a_short_session(tmp_path):
    done = townlet("train", "--episodes", "3", "--agents", "2", "--device", "cpu", "--db", str(tmp_path / "t.db"))
    assert done.returncode == 0 and done.stdout == ""
    assert [int(m[1]) for m in LOG_LINE.finditer(done.stderr)] == [1, 2, 3]


def test_the_default_interval_keeps_a_long_session_to_about_a_hundred_lines():
    from townlet_cli.train_progress import log_interval

    assert [log_interval(0, n) for n in (1, 100, 250, 10_000)] == [1, 1, 2, 100]
    assert log_interval(7, 10_000) == 7


def test_a_stage_change_after_the_sessions_last_episode_is_kept_for_the_summary(log_run, tmp_path):
    db, done = log_run
    stages = _stages(db)
    changes = [e for (e, s), (_, after) in pairwise(stages) if after > s]
    assert changes, f"the reference run must change stage within 30 episodes: {stages}"
    change = changes[0]
    announced = f"stage 1 → 2 from episode {change + 1} ("
    assert any(line.startswith(announced) for line in done.stderr.splitlines())  # mid-session: said at once

    short = townlet("train", "--episodes", str(change), "--agents", "8", "--seed", "0", "--device", "cpu",
                    "--db", str(tmp_path / "short.db"))  # fmt: skip
    assert short.returncode == 0, short.stderr
    lines = short.stderr.splitlines()
    assert not any(line.startswith(announced) for line in lines)
    summary = lines.index("training summary")
    after = [line for line in lines[summary:] if "the curriculum moved on" in line]
    assert after == [
        f"after this session's last episode the curriculum moved on: {announced}{after[0].split(announced)[1]}"
    ]
    assert after[0].endswith("; train --resume 1 trains there")


def test_reading_commands_answer_on_stdout_and_say_nothing_on_stderr(log_run):
    db = str(log_run[0])
    for args in (
        ["runs"],
        ["episodes", "--last", "2"],
        ["episodes", "--csv"],
        ["replay", "--episode", "3"],
        ["audit", "baselines"],
        ["audit", "visits"],
        ["audit", "rewards"],
        ["db", "current"],
        ["db", "check"],
    ):
        done = townlet(*args, "--db", db)
        assert done.returncode == 0, (args, done.stderr)
        assert done.stdout.strip() and done.stderr == "", args


def test_commands_that_change_things_say_so_on_stderr_only(log_run, tmp_path):
    source = str(log_run[0])
    copy = str(tmp_path / "copy.db")
    done = townlet("db", "copy", source, copy)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and "copied run 1 of" in done.stderr and "1 run, 240 agent rows copied" in done.stderr
    down = townlet("db", "downgrade", "0002", "--db", copy, "--yes", "--no-backup")
    assert down.returncode == 0, down.stderr
    assert down.stdout == "" and "downgraded" in down.stderr
    up = townlet("db", "upgrade", "--db", copy, "--no-backup")
    assert up.returncode == 0, up.stderr
    assert up.stdout == "" and "upgraded" in up.stderr
    out = tmp_path / "rows.csv"
    exported = townlet("export", "--format", "csv", "--out", str(out), "--db", copy)
    assert exported.stdout == "" and exported.stderr == f"wrote 240 rows of run 1 to {out}\n"


def test_export_takes_several_runs_told_apart_by_the_run_column(log_run, tmp_path):
    db = tmp_path / "two.db"
    db.write_bytes(log_run[0].read_bytes())
    assert townlet("train", "--episodes", "2", "--agents", "3", "--device", "cpu", "--db", str(db)).returncode == 0
    done = townlet("export", "--format", "csv", "--run", "2", "--run", "1", "--db", str(db))
    assert done.returncode == 0, done.stderr
    runs = [line.split(",", 1)[0] for line in done.stdout.splitlines()[1:]]
    assert runs == ["2"] * 6 + ["1"] * 240
    episodes = townlet("episodes", "--json", "--run", "2", "--db", str(db))
    assert [row["run"] for row in json.loads(episodes.stdout)] == [2, 2]


def test_the_reachable_address_warnings_go_to_stderr(tmp_path):
    port = free_port()
    done = townlet("train", "--episodes", "1", "--agents", "2", "--device", "cpu", "--db", str(tmp_path / "t.db"),
                   "--live", f"0.0.0.0:{port}")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "warning: --live 0.0.0.0 is reachable from other machines" in done.stderr
    assert "live telemetry on ws://" in done.stderr


def test_serve_says_where_it_serves_and_that_it_stopped_on_stderr(log_run):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "townlet_cli", "serve", "--db", str(log_run[0]), "--host", "0.0.0.0",
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/api/runs"), "serve to answer", timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    assert stdout == ""
    assert "warning: --host 0.0.0.0 is reachable from other machines" in stderr
    assert f":{port} (Ctrl-C to stop)" in stderr and stderr.rstrip().endswith("stopped (SIGTERM)")


def test_watch_waits_on_stderr():
    done = townlet("watch", f"ws://127.0.0.1:{free_port()}", "--timeout", "0.5")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "waiting for the trainer at" in done.stderr and "error: cannot connect" in done.stderr


@pytest.mark.parametrize("args", [[], ["audit"], ["db"]])
def test_a_bare_group_prints_its_help_not_an_empty_error(args):
    done = townlet(*args)
    assert done.returncode == 0
    assert "Usage: " in done.stdout and "Commands" in done.stdout and "error" not in done.stderr


def test_a_sqlite_path_that_cannot_be_opened_names_the_folder_not_a_server(tmp_path):
    missing = tmp_path / "nope" / "x.db"
    done = townlet("train", "--episodes", "1", "--db", str(missing))
    assert done.returncode == 2
    assert done.stderr == (
        f"error: cannot use database {missing} (unable to open database file): the folder {missing.parent} "
        "does not exist: create it, or fix --db\n"
    )
    assert not missing.parent.exists()


def test_integer_options_show_their_lower_bound_only():
    done = townlet("train", "--help", env={**os.environ, "COLUMNS": "80"})
    assert "[x>=1]" in done.stdout and "9223372036854775807" not in done.stdout
    assert "auto|cpu|cuda[:N]" in done.stdout
    too_big = townlet("episodes", "--run", "9223372036854775808")
    assert too_big.returncode == 2
    assert "9223372036854775808 is too large: at most 9223372036854775807" in too_big.stderr
