"""A refused ``train`` leaves nothing behind: no file, no ghost run, no changed row."""

import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.helpers import free_port
from townlet_cli.app import app

runner = CliRunner()
TRAIN = ["train", "--episodes", "2", "--agents", "2", "--device", "cpu"]


def runs_of(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT id, status, num_agents FROM runs ORDER BY id").fetchall()


@pytest.fixture
def trained(tmp_path) -> Path:
    db = tmp_path / "t.db"
    result = runner.invoke(app, [*TRAIN, "--db", str(db)])
    assert result.exit_code == 0, result.output
    return db


def refused(args: list[str], *fragments: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_live_on_an_occupied_address_creates_no_file(tmp_path):
    with socket.socket() as occupied:
        occupied.bind(("127.0.0.1", 0))
        occupied.listen()
        port = occupied.getsockname()[1]
        refused([*TRAIN, "--db", str(tmp_path / "t.db"), "--live", f"127.0.0.1:{port}"], "cannot serve live telemetry")
    assert list(tmp_path.iterdir()) == []


def test_live_on_an_occupied_address_adds_no_run_to_an_existing_database(trained):
    before = runs_of(trained)
    with socket.socket() as occupied:
        occupied.bind(("127.0.0.1", 0))
        occupied.listen()
        refused([*TRAIN, "--db", str(trained), "--live", f"127.0.0.1:{occupied.getsockname()[1]}"])
    assert runs_of(trained) == before


def test_resume_on_a_missing_file_creates_nothing(tmp_path):
    refused([*TRAIN, "--db", str(tmp_path / "t.db"), "--resume", "1"], f"no database at {tmp_path / 't.db'}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the refusal cannot happen here")
def test_cuda_without_a_gpu_creates_nothing(tmp_path):
    refused(["train", "--episodes", "1", "--device", "cuda", "--db", str(tmp_path / "t.db")], "CUDA is not available")
    assert list(tmp_path.iterdir()) == []


def test_more_agents_than_memory_is_one_line_and_creates_nothing(tmp_path):
    refused(["train", "--agents", str(10**13), "--device", "cpu", "--db", str(tmp_path / "t.db")], "use fewer --agents")
    assert list(tmp_path.iterdir()) == []


def test_resume_refuses_a_different_agent_count_naming_the_stored_one(trained):
    before = runs_of(trained)
    refused([*TRAIN[:3], "--agents", "5", "--db", str(trained), "--resume", "1"],
            "run 1 was trained with training.agents = 2, not 5")  # fmt: skip
    assert runs_of(trained) == before


def test_resume_refuses_a_config_that_contradicts_the_stored_one(trained, tmp_path):
    path = tmp_path / "other.toml"
    path.write_text("[population]\nlearning_rate = 0.01\n")
    refused(["train", "--episodes", "1", "--db", str(trained), "--resume", "1", "--config", str(path)],
            "run 1 was trained with population.learning_rate = 0.001, not 0.01")  # fmt: skip


def test_resume_accepts_the_stored_values_and_new_episode_count(trained):
    result = runner.invoke(app, ["train", "--episodes", "1", "--agents", "2", "--device", "cpu",
                                 "--db", str(trained), "--resume", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert runs_of(trained) == [(1, "finished", 2)]


@pytest.mark.slow
def test_a_second_resume_of_a_run_being_trained_is_refused_before_training(trained, processes):
    first = subprocess.Popen(
        [sys.executable, "-m", "townlet_cli", "train", "--episodes", "10000", "--device", "cpu",
         "--db", str(trained), "--resume", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    processes.append(first)
    assert first.stderr.readline().startswith("resuming run 1")
    with sqlite3.connect(trained) as connection:
        before = connection.execute("SELECT count(*) FROM episodes").fetchone()[0]
    second = subprocess.run(
        [sys.executable, "-m", "townlet_cli", "train", "--episodes", "1", "--device", "cpu",
         "--db", str(trained), "--resume", "1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert second.returncode == 2, second.stderr
    assert second.stderr.startswith("error: run 1 in ") and "is being trained by another process" in second.stderr
    assert "Traceback" not in second.stderr and second.stdout == ""
    first.kill()
    first.communicate()
    with sqlite3.connect(trained) as connection:
        assert connection.execute("SELECT count(*) FROM episodes").fetchone()[0] >= before


def test_a_run_whose_trainer_died_can_be_resumed_at_once(trained):
    with sqlite3.connect(trained) as connection:
        connection.execute("UPDATE runs SET status = 'running'")  # what kill -9 leaves behind
    result = runner.invoke(app, ["train", "--episodes", "1", "--device", "cpu", "--db", str(trained), "--resume", "1"])
    assert result.exit_code == 0, result.output


def test_non_loopback_live_address_warns_that_the_stream_is_unauthenticated(tmp_path):
    port = free_port()
    result = runner.invoke(
        app, [*TRAIN, "--episodes", "1", "--db", str(tmp_path / "t.db"), "--live", f"0.0.0.0:{port}"]
    )
    assert result.exit_code == 0, result.output
    assert "unauthenticated" in result.stderr.splitlines()[0]


def test_resume_refuses_a_config_key_even_when_it_holds_the_built_in_default(trained, tmp_path):
    path = tmp_path / "defaults.toml"
    path.write_text("[training]\nagents = 8\n")  # the built-in default, but run 1 was trained with 2
    refused(["train", "--episodes", "1", "--db", str(trained), "--resume", "1", "--config", str(path)],
            "run 1 was trained with training.agents = 2, not 8")  # fmt: skip


def test_resume_takes_the_episode_count_and_write_queue_from_the_session(trained, tmp_path):
    path = tmp_path / "queue.toml"
    path.write_text("[training]\nwrite_queue = 3\nagents = 2\n")
    result = runner.invoke(app, ["train", "--episodes", "2", "--device", "cpu", "--db", str(trained),
                                 "--resume", "1", "--config", str(path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "resuming run 1 at episode 3: 2 agents for 2 episodes" in result.stderr
