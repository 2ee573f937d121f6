"""A damaged checkpoint is never loaded as state: it is refused in one line naming the ways out, and nothing
in the database changes until the user picks one (``--from-checkpoint`` or ``--fresh-learner``)."""

import hashlib
import io
import sqlite3
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from tests.resume_reference import AGENTS, config, telemetry
from townlet.training.checkpoint_seal import seal, unseal
from townlet.training.session import TrainingSession
from townlet_cli.app import app

runner = CliRunner()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def trained(tmp_path) -> Path:
    """Run 1: 12 episodes, checkpoints after episodes 10 and 12."""
    db = tmp_path / "t.db"
    assert TrainingSession(config(12, checkpoint_every=5), db=str(db)).run().status == "finished"
    return db


def blob(db: Path, episode: int = 12) -> bytes:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT blob FROM checkpoints WHERE episode = ?", (episode,)).fetchone()[0]


def store_blob(db: Path, data: bytes, *, episode: int = 12, format_version: int | None = None, size: int | None = None):
    with sqlite3.connect(db) as connection:
        connection.execute(
            "UPDATE checkpoints SET blob = ?, size_bytes = ?, format_version = coalesce(?, format_version) "
            "WHERE episode = ?",
            (data, len(data) if size is None else size, format_version, episode),
        )
    connection.close()


def state(db: Path, episode: int = 12) -> dict:
    raw = blob(db, episode)
    return torch.load(io.BytesIO(unseal(raw, format_version=2, size_bytes=len(raw))), weights_only=True)


def sealed(value: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return seal(buffer.getvalue())


def resume(db: Path, *args: str):
    return runner.invoke(app, ["train", "--resume", "1", "--db", str(db), *args])


def assert_refused(db: Path, before: str, *words: str) -> str:
    result = resume(db, "--episodes", "2")
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output, result.output
    line = " ".join(result.stderr.split())
    for word in words:
        assert word in line, line
    assert sha256(db) == before  # nothing deleted, relabelled or even touched before the user decides
    return line


@pytest.mark.parametrize("where", [0, 0.01, 0.2, 0.4, 0.6, 0.8, -64])
def test_64_bytes_overwritten_anywhere_in_the_newest_checkpoint_are_refused_naming_the_ways_out(trained, where):
    data = bytearray(blob(trained))
    at = int(len(data) * where) if where >= 0 else len(data) + where
    data[at : at + 64] = bytes(64) if data[at : at + 64] != bytes(64) else b"\xff" * 64
    store_blob(trained, bytes(data))
    line = assert_refused(
        trained,
        sha256(trained),
        "run 1's checkpoint after episode 12 is damaged (its",
        "was not loaded; nothing was changed",
        "`--resume 1 --from-checkpoint 10` (episodes 11-12 are trained again)",
        "`--resume 1 --fresh-learner`",
    )
    assert "weights_only" not in line


def _missing_keys(db: Path) -> bytes:
    value = state(db)
    del value["trainer"]["population"]["replay"]
    return sealed(value)


def _reshaped_tensor(db: Path) -> bytes:
    value = state(db)
    weights = value["trainer"]["population"]["q_net"]
    name = next(iter(weights))
    weights[name] = weights[name].reshape(-1)
    return sealed(value)


def _reshaped_optimizer_moment(db: Path) -> bytes:
    """Adam's load_state_dict takes any shape here; the first learning step would then crash mid-training."""
    value = state(db)
    moments = value["trainer"]["population"]["optimizer"]["state"][0]
    moments["exp_avg"] = moments["exp_avg"].reshape(-1)
    return sealed(value)


class RunsCode:
    def __reduce__(self):
        return (Path.touch, (Path(__file__).parent / "checkpoint-pickle-ran",))


def _code_running_pickle(db: Path) -> bytes:
    return sealed({"format": 2, "episode": 12, "trainer": RunsCode()})


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda db: b"", "it holds 0 bytes,"),
        (lambda db: blob(db)[:-1000], "were stored"),
        (lambda db: bytes(range(256)) * 100, "its header is not a townlet checkpoint's"),
        (_missing_keys, "trainer.population lacks ['replay']"),
        (_reshaped_tensor, "its state does not fit this trainer (trainer.population.q_net."),
        (_reshaped_optimizer_moment, "optimizer state 0.exp_avg has shape"),
        (_code_running_pickle, "it does not load as tensors and plain values"),
    ],
    ids=["empty", "truncated", "random", "missing-keys", "reshaped-tensor", "reshaped-moment", "code-pickle"],
)
def test_every_kind_of_damage_is_one_line_exit_2_and_changes_nothing(trained, damage, reason):
    data = damage(trained)
    lost_bytes = "were stored" in reason or "0 bytes," in reason  # blanked or cut short in place
    store_blob(trained, data, size=len(blob(trained)) if lost_bytes else None)
    assert_refused(trained, sha256(trained), "checkpoint after episode 12 is damaged", reason, "--fresh-learner")
    assert not (Path(__file__).parent / "checkpoint-pickle-ran").exists()


def test_a_format_1_checkpoint_is_refused_as_an_old_learner_and_db_check_still_finds_its_damage(trained):
    raw = blob(trained)
    payload = unseal(raw, format_version=2, size_bytes=len(raw))  # what townlet 0.4-0.5 stored as it was
    store_blob(trained, payload, format_version=1)
    assert_refused(trained, sha256(trained), "has format 1: it holds the learner of townlet 0.11", "--fresh-learner")
    assert "damaged checkpoint" not in runner.invoke(app, ["db", "check", "--db", str(trained)]).stdout
    data = bytearray(payload)
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    store_blob(trained, bytes(data))
    checked = runner.invoke(app, ["db", "check", "--db", str(trained)])
    assert "damaged checkpoint: run 1's checkpoint after episode 12 (" in checked.stdout
    assert "fails its CRC-32 check" in checked.stdout


def test_from_checkpoint_resumes_from_the_older_intact_one_and_continues_exactly(trained, straight):
    store_blob(trained, blob(trained)[:-1] + b"\x00")
    result = resume(trained, "--from-checkpoint", "10", "--episodes", "3")
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert "for 5 episodes (2 trained again, then 3 new)" in said
    assert "episodes 11-12 are deleted and trained again from that checkpoint, then 3 more" in said
    assert telemetry(str(trained)) == straight[: 15 * AGENTS]


def test_from_checkpoint_names_the_checkpoints_there_are_when_it_is_not_one(trained):
    before = sha256(trained)
    result = resume(trained, "--from-checkpoint", "7")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert "run 1 has no checkpoint after episode 7: its checkpoints are after episode 10, 12" in result.stderr
    assert sha256(trained) == before


def test_fresh_learner_keeps_every_episode_and_restarts_learning_after_the_last(trained):
    store_blob(trained, b"")
    before = telemetry(str(trained))
    result = resume(trained, "--fresh-learner", "--episodes", "2")
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert "run 1 has no learner checkpoint (--fresh-learner): learning restarts from scratch at episode 13" in said
    after = telemetry(str(trained))
    assert after[: len(before)] == before and len(after) == 14 * AGENTS


def test_db_check_names_each_damaged_checkpoint_and_exits_1(trained):
    clean = runner.invoke(app, ["db", "check", "--db", str(trained)])
    assert clean.exit_code == 0 and "2 checkpoints intact" in clean.output, clean.output
    store_blob(trained, blob(trained, 10)[:-5] + b"xxxxx", episode=10)
    result = runner.invoke(app, ["db", "check", "--db", str(trained)])
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert "damaged checkpoint: run 1's checkpoint after episode 10 (its sha256 digest does not match" in said
    assert "after episode 12" not in said
