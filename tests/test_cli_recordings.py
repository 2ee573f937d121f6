"""``recordings``, ``replay --steps`` and ``replay --play`` as a user runs them, on a real trained SQLite file;
bad input is one line, exit 2, and changes nothing."""

import csv
import io
import itertools
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import V5_FIXTURE, cli_ok, fixture_copy
from townlet.persistence.reader import TelemetryReader
from townlet_cli.app import app

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("rec") / "t.db"
    cli_ok("train", "-n", "12", "-a", "4", "--device", "cpu", "--record-episodes", "3,7", "--db", str(db))
    return db


def refused(args: list[str], says: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and result.stderr.count("\n") == 1 and says in result.stderr, result.stderr


def test_recordings_lists_why_agents_steps_and_bytes(trained):
    found = json.loads(cli_ok("recordings", "--json", "--db", str(trained)).stdout)
    listed = {r["episode"]: r["reasons"] for r in found["recordings"]}
    assert listed == {1: ["stage"], 3: ["asked"], 7: ["asked"], 10: ["every"], 12: ["session_last"]}
    for r in found["recordings"]:
        assert r["agents"] == 4 and r["bytes"] > 0 and r["agent_steps"] >= r["steps"] >= 1
        assert r["bytes_per_agent_step"] == round(r["bytes"] / r["agent_steps"], 3) < 4
    table = cli_ok("recordings", "--db", str(trained)).stdout
    assert "session_last" in table and "B/step" in table


def test_replay_steps_json_holds_every_step_and_agrees_with_the_agent_row(trained):
    out = cli_ok("replay", "-e", "10", "--steps", "--agent", "2", "--json", "--db", str(trained)).stdout
    steps = [json.loads(line) for line in out.splitlines()]
    final = json.loads(cli_ok("replay", "-e", "10", "--agent", "2", "--json", "--db", str(trained)).stdout)
    (agent,) = final["agents"]
    assert [s["step"] for s in steps] == list(range(1, agent["survival_steps"] + 1))
    last = steps[-1]
    assert last["death_cause"] == agent["death_cause"] and all(s["death_cause"] is None for s in steps[:-1])
    for meter in ("energy", "hygiene", "satiation", "money"):
        assert last[f"meter_{meter}"] == agent[f"meter_{meter}"]
    assert sum(s["reward"] for s in steps) == agent["episode_reward"]
    assert sum(s["affordance"] == "bed" for s in steps) == agent["visits_bed"]
    for before, after in itertools.pairwise(steps):
        assert abs(after["row"] - before["row"]) + abs(after["col"] - before["col"]) <= 1  # one cell a step


def test_replay_steps_csv_and_a_range(trained):
    out = cli_ok("replay", "-e", "10", "--steps", "--from", "3", "--to", "5", "--csv", "--db", str(trained)).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["step"] for r in rows] == ["3", "4", "5"] and rows[0]["action"] in ("up", "down", "left", "right",
                                                                                 "interact")  # fmt: skip
    json_rows = cli_ok("replay", "-e", "10", "--steps", "--from", "3", "--to", "5", "--json", "--db", str(trained))
    assert [float(r["meter_energy"]) for r in rows] == [
        json.loads(line)["meter_energy"] for line in json_rows.stdout.splitlines()
    ]


def test_replay_play_prints_frames_one_after_another_when_not_a_terminal(trained):
    done = subprocess.run(
        [sys.executable, "-m", "townlet_cli", "replay", "-e", "10", "--play", "--agent", "1", "--from", "1",
         "--to", "3", "--db", str(trained)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [f"agent 1 · step {t}/" in done.stdout for t in (1, 2, 3)] == [True] * 3
    with TelemetryReader(str(trained)) as reader:
        run = reader.run(1)
        head = reader.recording_header(run, 10)
        agent = reader.recorded_agent(run, 10, 1, head)
    frames = done.stdout.split("\n\n")
    grid = frames[2].splitlines()[: head.grid_size]  # step 3's grid: agent 1 drawn at its recorded cell
    assert grid[agent.rows[2]][2 * agent.cols[2]] == "1"
    assert "B" in grid[2] and max(len(line) for line in done.stdout.splitlines()) <= 80


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-e", "5", "--steps"], "episode 5 was not recorded; recorded episodes of run 1: 1, 3, 7, 10, 12"),
        (["-e", "99", "--steps"], "run 1 has no episode 99"),
        (["-e", "10", "--steps", "--agent", "9"], "agent 9 was not recorded in episode 10 of run 1"),
        (["-e", "10", "--steps", "--from", "900"], "pick --from/--to inside them"),
        (["-e", "10", "--play", "--fps", "0"], "--fps must be > 0"),
        (["-e", "10", "--play", "--json"], "--play draws the grid"),
        (["-e", "10", "--csv"], "go with --steps"),
    ],
)
def test_bad_step_requests_are_one_line_naming_what_exists(trained, args, says):
    refused(["replay", *args, "--db", str(trained)], says)


def test_a_damaged_recording_is_named_and_nothing_else_breaks(trained, tmp_path):
    db = fixture_copy(tmp_path, trained)
    with sqlite3.connect(db) as connection:
        blob = bytearray(connection.execute("SELECT blob FROM recording_agents LIMIT 1 OFFSET 4").fetchone()[0])
        blob[10] ^= 0xFF
        blob[11] ^= 0xFF
        connection.execute("UPDATE recording_agents SET blob = ? WHERE rowid = (SELECT rowid FROM recording_agents "
                           "LIMIT 1 OFFSET 4)", (bytes(blob),))  # fmt: skip
        episode, agent = connection.execute(
            "SELECT e.episode, a.agent_idx FROM recording_agents a JOIN episodes e ON e.id = a.episode_pk "
            "LIMIT 1 OFFSET 4"
        ).fetchone()
    refused(["replay", "-e", str(episode), "--steps", "--agent", str(agent), "--db", str(db)],
            f"run 1 episode {episode} agent {agent}: the recording is damaged")  # fmt: skip
    cli_ok("replay", "-e", str(episode), "--json", "--db", str(db))  # the episode itself still replays
    check = runner.invoke(app, ["db", "check", "--db", str(db)])
    assert check.exit_code == 1 and f"recording differs: run 1 episode {episode} agent {agent}" in check.stdout


def test_recording_settings_are_refused_in_one_line(tmp_path):
    db = tmp_path / "t.db"
    refused(["train", "--record-episodes", "0,abc", "--db", str(db)], "--record-episodes takes episode numbers")
    bad = tmp_path / "bad.toml"
    for text, says in (
        ("[recording]\nevery = -1\n", "recording.every must be >= 0"),
        ("[recording]\nfps = 3\n", "unknown key 'fps'"),
        ("[recording]\nenabled = 1\n", "recording: enabled must be true or false"),
        ("[recording]\nagents = [9]\n", "recording.agents: agent 9 does not exist"),
    ):
        bad.write_text(text)
        refused(["train", "--config", str(bad), "--db", str(db)], says)
    assert not db.exists()


def test_an_upgraded_old_database_has_no_recordings_and_says_so(tmp_path):
    db = fixture_copy(tmp_path, V5_FIXTURE)
    cli_ok("db", "upgrade", "--db", str(db))
    assert json.loads(cli_ok("recordings", "--run", "1", "--json", "--db", str(db)).stdout)["recordings"] == []
    refused(["replay", "-e", "2", "--steps", "--db", str(db), "--run", "1"],
            "episode 2 was not recorded; recorded episodes of run 1: none")  # fmt: skip


def test_export_leaves_recordings_out_unless_asked_and_then_has_every_step(trained):
    rows = cli_ok("export", "-f", "jsonl", "--db", str(trained)).stdout.splitlines()
    assert all("action" not in json.loads(line) for line in rows)  # agent rows only
    steps = [json.loads(line) for line in cli_ok("export", "-f", "jsonl", "--recordings", "--db", str(trained)).stdout
             .splitlines()]  # fmt: skip
    listed = json.loads(cli_ok("recordings", "--json", "--db", str(trained)).stdout)["recordings"]
    assert len(steps) == sum(r["agent_steps"] for r in listed)
    one = [s for s in steps if (s["episode"], s["agent_idx"]) == (10, 2)]
    replayed = cli_ok("replay", "-e", "10", "--steps", "--agent", "2", "--json", "--db", str(trained)).stdout
    assert [{k: v for k, v in s.items() if k not in ("run", "episode", "agent_idx")} for s in one] == [
        json.loads(line) for line in replayed.splitlines()
    ]
    csv_rows = list(csv.DictReader(io.StringIO(cli_ok("export", "-f", "csv", "--recordings", "--db", str(trained))
                                               .stdout)))  # fmt: skip
    assert len(csv_rows) == len(steps) and csv_rows[0]["run"] == "1"
    refused(["export", "-f", "parquet", "--recordings", "--out", "x.parquet", "--db", str(trained)],
            "--recordings exports csv or jsonl")  # fmt: skip


def test_a_recording_of_a_newer_format_is_refused_in_one_line(trained, tmp_path):
    db = fixture_copy(tmp_path, trained)
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE recordings SET format = 9")
    refused(["replay", "-e", "10", "--steps", "--db", str(db)], "the recording is format 9, newer than this townlet")
