"""``townlet-telemetry train`` through the CLI runner and as a real process."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from townlet_cli.app import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _database_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("TOWNLET_DB", str(tmp_path / "townlet.db"))


def test_train_runs_and_prints_a_summary(tmp_path):
    result = runner.invoke(app, ["train", "--episodes", "2", "--agents", "3", "--seed", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "training 3 agents for 2 episodes on cpu (1 thread, seed 1), run 1 in " in result.stderr
    assert "run 1 finished: 2 episodes written" in result.stderr
    assert "training summary" in result.stderr
    assert "2 episodes in" in result.stderr


def test_config_file_is_read_and_flags_override_it(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[training]\nagents = 2\nepisodes = 1\ndevice = 'cpu'\n")
    result = runner.invoke(app, ["train", "--config", str(path), "--agents", "4"])
    assert result.exit_code == 0, result.output
    assert "training 4 agents for 1 episode " in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "tpu"], "error: training.device must be one of auto, cpu, cuda, got 'tpu'"),
        (["--config", "missing.toml"], "error: config file missing.toml does not exist"),
    ],
)
def test_bad_input_is_one_line_on_stderr_with_exit_code_2(args, message):
    result = runner.invoke(app, ["train", *args])
    assert result.exit_code == 2
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_unknown_config_key_exits_2_naming_the_key(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[training]\nepisode = 3\n")
    result = runner.invoke(app, ["train", "--config", str(path)])
    assert result.exit_code == 2
    assert "unknown key 'episode'" in result.stderr


def test_help_teaches_with_an_example():
    for args in (["--help"], ["train", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0
        assert "Example: townlet-telemetry train" in result.stdout


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_after_the_current_episode(tmp_path, processes):
    proc = subprocess.Popen(
        [sys.executable, "-m", "townlet_cli", "train", "--episodes", "500", "--agents", "2", "--device", "cpu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200"},
    )
    processes.append(proc)
    assert proc.stderr is not None
    assert proc.stderr.readline().startswith("training 2 agents")
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert out == "" and "stopped by Ctrl-C" in err
    last = err.splitlines()[-1]
    assert last.startswith("interrupted by Ctrl-C: run 1 marked interrupted, ") and err.count("interrupted by") == 1
    assert "Traceback" not in err
    summary = re.search(r"^(\d+) episodes? in [\d.]+s$", err, re.M)
    assert summary is not None, err
    assert 1 <= int(summary[1]) < 500


def test_training_uses_one_thread_unless_configured_and_says_how_many(tmp_path):
    default = runner.invoke(app, ["train", "--episodes", "1", "--agents", "2", "--device", "cpu"])
    assert default.exit_code == 0, default.output
    assert "on cpu (1 thread, seed 0)" in default.stderr
    path = tmp_path / "threads.toml"
    path.write_text("[training]\nthreads = 2\n")
    two = subprocess.run(
        [sys.executable, "-m", "townlet_cli", "train", "--episodes", "1", "--agents", "2", "--device", "cpu",
         "--config", str(path), "--db", str(tmp_path / "two.db")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr
    assert "on cpu (2 threads, seed 0)" in two.stderr


def test_epsilon_in_the_telemetry_is_the_schedules_exact_python_value(tmp_path):
    result = runner.invoke(app, ["train", "--episodes", "4", "--agents", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    episodes = json.loads(runner.invoke(app, ["episodes", "--run", "1", "--json"]).stdout)
    schedule = [1.0]
    for _ in range(3):
        schedule.append(max(0.05, schedule[-1] * 0.9))  # the default decay and floor, in Python floats
    assert [e["epsilon_mean"] for e in episodes] == schedule == [1.0, 0.9, 0.81, 0.7290000000000001]
    replay = json.loads(runner.invoke(app, ["replay", "--run", "1", "--episode", "2", "--json"]).stdout)
    assert {agent["epsilon"] for agent in replay["agents"]} == {0.9}


def test_train_and_audit_name_the_same_episode_for_a_stage_change(tmp_path):
    config = tmp_path / "fast.toml"
    config.write_text("[curriculum]\nwindow = 2\nadvance_threshold = 0.01\n")
    args = ["train", "--episodes", "5", "--agents", "2", "--device", "cpu", "--config", str(config)]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    said = [int(m) for m in re.findall(r"stage \d → \d from episode (\d+)", result.stderr)]
    audit = json.loads(runner.invoke(app, ["audit", "baselines", "--run", "1", "--json"]).stdout)
    changes = [c["episode"] for c in audit["agents"][0]["stage_changes"]]
    assert said == changes == [3, 5]
