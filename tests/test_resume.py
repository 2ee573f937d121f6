"""Resume resumes learning: checkpoints in the database, exact continuation, honest run states.

The property that proves it: on CPU with a fixed seed, 30 episodes in one go and 20 + ``--resume`` 10 store
identical telemetry for every episode (every field but timestamps and durations), also when the first
session is stopped by Ctrl-C or killed at a random episode.
"""

import json
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from tests.helpers import V2_FIXTURE, fixture_copy, wait_for
from tests.resume_reference import AGENTS, config, recorded, telemetry
from townlet.config import with_overrides
from townlet.persistence.models import AGENT_FIELDS
from townlet.persistence.reader import TelemetryReader
from townlet.persistence.run_lock import RunLock
from townlet.persistence.store import TelemetryStore
from townlet.training.session import TrainingSession
from townlet_cli.app import app

runner = CliRunner()


def checkpoints(db: Path, run: int = 1) -> list[int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        rows = connection.execute("SELECT episode FROM checkpoints WHERE run_id = ? ORDER BY episode", (run,))
        return [episode for (episode,) in rows]


def test_thirty_episodes_equal_twenty_plus_a_resume_of_ten(db_url, straight, straight_recordings):
    first = TrainingSession(config(20), db=db_url).run()
    assert first.checkpoint is not None and first.checkpoint[0] == 20
    resumed = TrainingSession(config(10), db=db_url, resume=first.run)
    assert any("restored from the checkpoint after episode 20" in n for n in resumed.result.notices)
    assert resumed.run().status == "finished"
    stored = telemetry(db_url, first.run)
    assert len(stored) == 30 * AGENTS
    assert stored == straight
    recordings = recorded(db_url, first.run)
    stage_of = {row[0]: row[2] for row in straight}
    stage_starts = {e for e in stage_of if e > 1 and stage_of[e] > stage_of[e - 1]}
    assert stage_starts and {row[0] for row in recordings} == {1, 10, 20, 30} | stage_starts  # + each session's last
    assert recordings == straight_recordings  # the same steps, bit for bit
    epsilon_21 = {row[3 + AGENT_FIELDS.index("epsilon")] for row in stored if row[0] == 21}
    schedule = 1.0
    for episode in range(1, 21):
        schedule = max(0.05, schedule * 0.9)
        if episode + 1 in stage_starts:
            schedule = max(schedule, 0.5)  # population.stage_epsilon
    assert epsilon_21 == {schedule} != {1.0}  # the learner went on; it did not restart


def test_episodes_after_the_newest_checkpoint_are_replaced_in_one_go_and_continue_exactly(db_url, straight):
    TrainingSession(config(12, checkpoint_every=5), db=db_url).run()
    with TelemetryStore.open(db_url, write=True) as store, store.transaction() as connection:
        connection.execute(text("DELETE FROM checkpoints WHERE episode = 12"))  # as if killed after episode 12
    resumed = TrainingSession(config(18), db=db_url, resume=1)  # 18 more after the 12 stored: never fewer
    assert resumed.result.first_episode == 11
    assert (resumed.result.planned, resumed.result.replaced) == (20, 2)
    assert (
        "run 1 has episodes up to 12 but resumes from the checkpoint after episode 10 (its process died before "
        "the next one): episodes 11-12 are deleted and trained again from that checkpoint, then 18 more"
    ) in resumed.result.notices
    assert resumed.run().status == "finished"
    assert telemetry(db_url) == straight
    with TelemetryStore.open(db_url, write=False) as store:  # the replaced episodes took their agent rows along
        assert store.count_rows() == {"runs": 1, "episodes": 30, "agent_snapshots": 30 * AGENTS}


def test_checkpoints_every_n_episodes_keep_the_newest_and_report_their_size(tmp_path):
    db = tmp_path / "t.db"
    result = TrainingSession(config(23, checkpoint_every=5, checkpoints_kept=2), db=str(db)).run()
    assert checkpoints(db) == [20, 23]  # 5, 10, 15 were pruned; 23 is the session's end
    with TelemetryStore.open(str(db), write=False) as store:
        sizes = store.checkpoint_sizes(1)
    assert result.checkpoint == (23, sizes[23]) and sizes[23] > sizes[20] > 100_000  # the replay buffer grows


def _train(db: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "townlet_cli", "train", "--db", str(db), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=db.parent,
    )  # fmt: skip


def _episodes(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
            return connection.execute("SELECT count(*) FROM episodes").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


FIRST = ["--episodes", "30", "--agents", str(AGENTS), "--seed", "0", "--device", "cpu"]


@pytest.mark.slow
def test_ctrl_c_at_a_random_episode_then_resume_stores_the_same_telemetry(
    tmp_path, processes, straight, straight_recordings
):
    db = tmp_path / "t.db"
    proc = _train(db, *FIRST)
    processes.append(proc)
    stop_at = random.randint(2, 25)
    wait_for(lambda: _episodes(db) >= stop_at, f"{stop_at} episodes written")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    done = _episodes(db)
    assert out == "" and f"run 1 interrupted: {done} episodes written" in err
    assert f"learner checkpoint after episode {done} stored" in err
    assert checkpoints(db)[-1] == done
    resumed = subprocess.run(
        [sys.executable, "-m", "townlet_cli", "train", "--resume", "1", "--episodes", str(30 - done), "--db", str(db)],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert f"learner restored from the checkpoint after episode {done}" in resumed.stderr
    assert telemetry(str(db)) == straight
    assert recorded(str(db)) == straight_recordings  # an interrupted session's last episode was never planned last


@pytest.mark.slow
def test_kill_9_after_the_last_checkpoint_replaces_the_later_episodes_and_continues_exactly(
    tmp_path, processes, straight
):
    db = tmp_path / "t.db"
    settings = tmp_path / "often.toml"
    settings.write_text("[training]\ncheckpoint_every = 4\n")
    proc = _train(db, *FIRST, "--config", str(settings))
    processes.append(proc)
    wait_for(lambda: _episodes(db) >= random.randint(9, 14), "episodes written")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    done = _episodes(db)
    last_checkpoint = checkpoints(db)[-1]
    assert last_checkpoint == done // 4 * 4  # whole or absent: each went in with its episode
    listed = json.loads(runner.invoke(app, ["runs", "--json", "--db", str(db)]).stdout)
    assert listed[0]["status"] == "stale"  # stored as running; nobody holds its lock any more
    resumed = runner.invoke(app, ["train", "--resume", "1", "--episodes", str(30 - done), "--db", str(db)])
    assert resumed.exit_code == 0, resumed.output
    if done > last_checkpoint:
        said = " ".join(resumed.stderr.split())
        assert f"episodes {last_checkpoint + 1}-{done} are deleted and trained again from that checkpoint" in said
        assert (
            f"for {30 - last_checkpoint} episodes ({done - last_checkpoint} trained again, then {30 - done} new)"
            in said
        )
    assert telemetry(str(db)) == straight
    assert json.loads(runner.invoke(app, ["runs", "--json", "--db", str(db)]).stdout)[0]["status"] == "finished"


def test_a_run_without_a_checkpoint_resumes_as_before_and_says_learning_restarts(tmp_path):
    db = fixture_copy(tmp_path, V2_FIXTURE)
    assert runner.invoke(app, ["db", "upgrade", "--db", str(db)]).exit_code == 0
    result = runner.invoke(app, ["train", "--resume", "1", "--episodes", "2", "--device", "cpu", "--db", str(db)])
    assert result.exit_code == 0, result.output
    notice = " ".join(result.stderr.split())
    assert "run 1 has no learner checkpoint (it was trained by townlet 0.3.0, before checkpoints)" in notice
    assert "learning restarts from scratch at episode 8" in notice
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT max(episode) FROM episodes WHERE run_id = 1").fetchone() == (9,)
    assert checkpoints(db) == [9]


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ("format_version = 99", "has format 99, this townlet reads format 3: resume it with the townlet"),
        (
            "format_version = 2",
            "has format 2: it holds the learner of townlet 0.11 or before, which this townlet's "
            "(format 3) cannot continue: pass --fresh-learner",
        ),
        ("device = 'cuda'", "was trained on cuda, this session would train on cpu: pass --device cuda to continue"),
    ],
)
def test_a_checkpoint_it_cannot_continue_from_is_refused_in_one_line(tmp_path, change, refusal):
    db = tmp_path / "t.db"
    TrainingSession(config(2), db=str(db)).run()
    with sqlite3.connect(db) as connection:
        connection.execute(f"UPDATE checkpoints SET {change}")
    before = telemetry(str(db))
    result = runner.invoke(app, ["train", "--resume", "1", "--episodes", "1", "--db", str(db)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert refusal in result.stderr
    assert telemetry(str(db)) == before
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT status FROM runs").fetchone() == ("finished",)


def test_an_explicit_device_moves_a_checkpoint_from_another_device_type(tmp_path):
    db = tmp_path / "t.db"
    TrainingSession(config(2), db=str(db)).run()
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE checkpoints SET device = 'cuda'")
    result = runner.invoke(app, ["train", "--resume", "1", "--episodes", "1", "--device", "cpu", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "learner restored from the checkpoint after episode 2" in result.stderr


def test_a_running_run_nobody_holds_is_listed_stale_and_the_next_train_stores_it(db_url):
    with TelemetryStore.open(db_url, write=True) as store:
        dead = store.create_run(run_uuid="a" * 32, seed=0, device="cpu", num_agents=1, config={})
        alive = store.create_run(run_uuid="b" * 32, seed=0, device="cpu", num_agents=1, config={})
        with RunLock(store.url, alive, store.label):
            with TelemetryReader(db_url) as reader:
                assert [(r.id, r.status) for r in reader.runs()] == [(dead, "stale"), (alive, "running")]
            session = TrainingSession(config(1), db=db_url)
            assert session.result.notices == [
                f"run {dead} was left running by a process that died without saying so: marked stale"
            ]
            session.run()
            assert store.get_run(dead).status == "stale" and store.get_run(dead).ended_at is not None
            assert store.get_run(alive).status == "running"
        with TelemetryReader(db_url) as reader:
            assert reader.run(alive).status == "stale"


@pytest.mark.parametrize(("episodes", "every", "why"), [
    (2, 10, "its checkpoints were dropped: `db downgrade` below revision 0003 drops them"),  # finished: had one
    (12, 5, "its checkpoints were dropped: `db downgrade` below revision 0003 drops them"),
])  # fmt: skip
def test_after_a_downgrade_and_upgrade_a_resume_says_the_checkpoints_were_dropped(tmp_path, episodes, every, why):
    db = tmp_path / "t.db"
    TrainingSession(config(episodes, checkpoint_every=every), db=str(db)).run()
    for step in (["downgrade", "0002", "--yes", "--no-backup"], ["upgrade", "--no-backup"]):
        done = runner.invoke(app, ["db", *step, "--db", str(db)])
        assert done.exit_code == 0, done.output
    result = runner.invoke(app, ["train", "--resume", "1", "--episodes", "1", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert f"run 1 has no learner checkpoint ({why}): learning restarts" in " ".join(result.stderr.split())


def test_a_run_killed_before_its_first_checkpoint_says_so_when_resumed(tmp_path):
    db = tmp_path / "t.db"
    TrainingSession(config(3, checkpoint_every=10), db=str(db)).run()
    with sqlite3.connect(db) as connection:  # as if killed after episode 3, before any checkpoint
        connection.execute("DELETE FROM checkpoints")
        connection.execute("UPDATE runs SET status = 'stale'")
    connection.close()
    result = runner.invoke(app, ["train", "--resume", "1", "--episodes", "1", "--db", str(db)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert "run 1 has no learner checkpoint (its process died before the first one was stored)" in said


def test_resume_restores_the_curriculum_window_through_a_stage_change(tmp_path):
    """The checkpoint after episode 16 falls inside the window that advances the stage after episode 17: a
    resume that lost the window (or the stage) would advance later, or never, and store other telemetry."""

    def advancing(episodes: int):
        return with_overrides(config(episodes), "curriculum", advance_threshold=0.8)

    straight_db, split_db = str(tmp_path / "straight.db"), str(tmp_path / "split.db")
    reference = TrainingSession(advancing(24), db=straight_db).run()
    changes = [r.episode for r in reference.reports if r.stage_change is not None]
    assert changes and 16 < changes[0] < 24  # the stage changes after the checkpoint, inside the resumed part
    TrainingSession(advancing(16), db=split_db).run()
    TrainingSession(advancing(8), db=split_db, resume=1).run()
    assert telemetry(split_db) == telemetry(straight_db)
    assert {row[2] for row in telemetry(split_db) if row[0] > changes[0]} == {2}


def test_a_stale_runs_end_is_its_last_episodes_end_as_listed_and_as_stored(db_url):
    TrainingSession(config(3), db=db_url).run()
    with TelemetryStore.open(db_url, write=True) as store, store.transaction() as connection:
        # as if killed -9 mid-run: still running, no end, nobody holding its lock
        connection.execute(text("UPDATE runs SET status = 'running', ended_at = NULL"))
        last_end = connection.execute(text("SELECT max(finished_at) FROM episodes")).scalar_one()
        started = connection.execute(text("SELECT started_at FROM runs")).scalar_one()
    with TelemetryReader(db_url) as reader:
        listed = reader.run(1)
        shown_last = reader.runs()[0]
    assert listed.status == "stale" and shown_last.ended_at == listed.ended_at
    with TelemetryStore.open(db_url, write=True) as store:
        assert store.mark_stale_runs() == [1]
    with TelemetryReader(db_url) as reader:
        stored = reader.run(1)
    assert stored.status == "stale" and stored.ended_at == listed.ended_at  # listed before = stored after
    with TelemetryStore.open(db_url, write=False) as store, store.transaction() as connection:
        ended = connection.execute(text("SELECT ended_at FROM runs")).scalar_one()
    assert str(ended) == str(last_end) != str(started)
