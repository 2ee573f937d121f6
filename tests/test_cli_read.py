"""The read-side commands (runs, episodes, replay, audit, export) against a database a real training run wrote.

One training run (``trained``) is shared by the whole module; every test that would change a database works
on its own copy.
"""

import csv
import hashlib
import io
import json
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from townlet.config import load_config, with_overrides
from townlet.telemetry.broadcast import FakeBroadcaster
from townlet.telemetry.dto import CURRENT_DTO, FIELD_NAMES, SCHEMA_VERSION, VISIT_FIELDS
from townlet.training.session import SessionResult, TrainingSession
from townlet_cli.app import app

runner = CliRunner()
EPISODES, AGENTS = 8, 4


@dataclass
class Trained:
    db: Path
    result: SessionResult
    live: list[bytes]  # the exact bytes the live stream sent, one envelope per episode


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    """A real run: 8 episodes x 4 agents, curriculum advancing every 2 episodes (the baseline moves at stage 3)."""
    db = tmp_path_factory.mktemp("read") / "townlet.db"
    settings = with_overrides(load_config(), "training", episodes=EPISODES, agents=AGENTS, seed=4, device="cpu")
    settings = with_overrides(settings, "curriculum", window=2, advance_threshold=0.01)
    fake = FakeBroadcaster()
    result = TrainingSession(settings, db=str(db), sinks=[fake]).run()
    assert result.status == "finished"
    return Trained(db, result, fake.messages)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env=env)


def ok(*args: str, env: dict[str, str] | None = None):
    result = invoke(*args, env=env)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def one_line_error(result, text: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert text in result.stderr, result.stderr


# -- runs and episodes ---------------------------------------------------------------------------


def test_runs_json_lists_the_run(trained):
    runs = json.loads(ok("runs", "--db", str(trained.db), "--json").stdout)
    assert len(runs) == 1
    run = runs[0]
    assert (run["id"], run["run_uuid"], run["status"]) == (trained.result.run, trained.result.run_uuid, "finished")
    assert (run["num_agents"], run["episodes"], run["last_episode"], run["schema_version"]) == (
        AGENTS,
        EPISODES,
        8,
        SCHEMA_VERSION,
    )
    assert run["started_at"].endswith("+00:00") and run["ended_at"] >= run["started_at"]


def test_runs_table_shows_the_run(trained):
    out = ok("runs", "--db", str(trained.db)).stdout
    assert "finished" in out and "cpu" in out


def test_episodes_json_aggregates_agents(trained):
    rows = json.loads(ok("episodes", "--db", str(trained.db), "--json").stdout)
    assert [r["episode"] for r in rows] == list(range(1, EPISODES + 1))
    for row, report in zip(rows, trained.result.reports, strict=True):
        survival = report.snapshot.survival_steps
        rewards = report.snapshot.episode_reward
        assert row["agents"] == AGENTS and row["curriculum_stage"] == report.stage
        assert (row["survival_min"], row["survival_max"]) == (min(survival), max(survival))
        assert row["survival_mean"] == pytest.approx(sum(survival) / AGENTS)
        assert row["reward_min"] == pytest.approx(min(rewards)) and row["reward_max"] == pytest.approx(max(rewards))


def test_episodes_pages_with_limit_offset_and_last(trained):
    def episodes(*flags: str) -> list[int]:
        return [r["episode"] for r in json.loads(ok("episodes", "--db", str(trained.db), "--json", *flags).stdout)]

    assert episodes("--limit", "3") == [1, 2, 3]
    assert episodes("--limit", "2", "--offset", "5") == [6, 7]
    assert episodes("--last", "3") == [6, 7, 8]


def test_episodes_csv_has_a_header_and_one_row_per_episode(trained):
    rows = list(csv.DictReader(io.StringIO(ok("episodes", "--db", str(trained.db), "--csv").stdout)))
    assert len(rows) == EPISODES and rows[0]["episode"] == "1" and "survival_mean" in rows[0]


def test_episodes_json_and_csv_together_is_a_one_line_error(trained):
    one_line_error(invoke("episodes", "--db", str(trained.db), "--json", "--csv"), "--json and --csv")


# -- replay ----------------------------------------------------------------------------------------


def test_replay_json_matches_live_envelope(trained):
    for episode, sent in enumerate(trained.live, start=1):
        result = ok("replay", "--episode", str(episode), "--db", str(trained.db), "--json")
        assert result.stdout_bytes == sent + b"\n"


def test_replay_one_agent(trained):
    envelope = json.loads(ok("replay", "-e", "3", "--agent", "2", "--db", str(trained.db), "--json").stdout)
    assert [a["agent_idx"] for a in envelope["agents"]] == [2]
    assert envelope["agents"][0] == json.loads(trained.live[2])["agents"][2]


def test_replay_table_shows_every_agent(trained):
    out = ok("replay", "-e", "1", "--db", str(trained.db), env={"COLUMNS": "80"}).stdout
    assert "episode 1" in out and f"schema v{SCHEMA_VERSION}" in out
    assert "every agent: baseline " in out  # the curriculum's baseline, shared by all agents
    assert "meters: energy hygiene satiation money · visits: bed shower fridge job" in out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] and line.split()[0].isdigit()]
    assert [int(row[0]) for row in rows] == list(range(AGENTS))
    assert all(len(row) == 1 + 3 + 4 + 4 + 1 for row in rows)  # survival reward cause, 4 meters, 4 visits, entropy
    assert max(map(len, out.splitlines()[1:])) <= 80  # the table fits; the title holds the database's path


def test_replay_table_of_one_agent_lists_every_field(trained):
    out = ok("replay", "-e", "2", "--agent", "1", "--db", str(trained.db)).stdout
    sent = json.loads(trained.live[1])["agents"][1]
    values = dict(line.split() for line in out.splitlines()[1:] if len(line.split()) == 2)
    assert values["agent"] == "1"
    fields = [name for name in FIELD_NAMES[CURRENT_DTO] if name not in ("agent_idx", "episode")]
    assert set(values) == {"agent", *fields}
    assert values["death_cause"] == sent["death_cause"] and int(values["visits_job"]) == sent["visits_job"]


# -- audit -----------------------------------------------------------------------------------------


def test_audit_baselines_follows_the_curriculum(trained):
    report = json.loads(ok("audit", "baselines", "--db", str(trained.db), "--json").stdout)
    assert [a["agent_idx"] for a in report["agents"]] == list(range(AGENTS))
    stages = [r.stage for r in trained.result.reports]
    for agent in report["agents"]:
        assert agent["episodes"] == list(range(1, EPISODES + 1))
        assert agent["curriculum_stage"] == stages
        assert agent["baseline_survival_steps"] == [
            r.snapshot.baseline_survival_steps[0] for r in trained.result.reports
        ]
        changes = [(c["episode"], c["from"], c["to"]) for c in agent["stage_changes"]]
        expected = [(e, a, b) for e, a, b in zip(range(2, EPISODES + 1), stages, stages[1:], strict=False) if a != b]
        assert changes == expected and changes  # the fixture's curriculum does advance
        assert [f for f in agent["flags"] if f["flag"] != "survival-below-baseline"] == []


def test_audit_baselines_one_agent_matches_the_full_audit(trained):
    full = json.loads(ok("audit", "baselines", "--db", str(trained.db), "--json").stdout)
    one = json.loads(ok("audit", "baselines", "--agent", "2", "--db", str(trained.db), "--json").stdout)
    assert one["agents"] == [full["agents"][2]]


def test_audit_baselines_table_has_a_sparkline_per_agent(trained):
    out = ok("audit", "baselines", "--db", str(trained.db)).stdout
    rows = [line for line in out.splitlines() if line.startswith("│") and line.split("│")[1].strip()]  # not wraps
    assert len(rows) == AGENTS and all(any(ch in line for ch in "▁▂▃▄▅▆▇█") for line in rows)


def sent_agents(trained: Trained) -> list[list[dict]]:
    """The agents of every episode as the live stream sent them."""
    return [json.loads(message)["agents"] for message in trained.live]


def test_audit_baselines_json_carries_each_episodes_action_entropy(trained):
    report = json.loads(ok("audit", "baselines", "--db", str(trained.db), "--json").stdout)
    for agent in report["agents"]:
        expected = [episode[agent["agent_idx"]]["action_entropy"] for episode in sent_agents(trained)]
        assert agent["action_entropy"] == expected


def test_audit_visits_json_has_every_agents_visits_per_affordance_and_episode(trained):
    report = json.loads(ok("audit", "visits", "--db", str(trained.db), "--json").stdout)
    assert report["affordances"] == [f.removeprefix("visits_") for f in VISIT_FIELDS]
    assert report["episodes_without_visits"] == 0
    assert [a["agent_idx"] for a in report["agents"]] == list(range(AGENTS))
    for agent in report["agents"]:
        assert agent["episodes"] == list(range(1, EPISODES + 1))
        for affordance, counts in agent["visits"].items():
            assert counts == [episode[agent["agent_idx"]][f"visits_{affordance}"] for episode in sent_agents(trained)]
            assert agent["total"][affordance] == sum(counts)
    assert sum(sum(a["total"].values()) for a in report["agents"]) > 0  # the agents did use the affordances


def test_audit_visits_one_agent_csv(trained):
    rows = list(csv.DictReader(io.StringIO(ok("audit", "visits", "-a", "2", "--csv", "--db", str(trained.db)).stdout)))
    assert [int(r["episode"]) for r in rows] == list(range(1, EPISODES + 1))
    assert {r["agent_idx"] for r in rows} == {"2"}
    for row, episode in zip(rows, sent_agents(trained), strict=True):
        assert {f: int(row[f]) for f in VISIT_FIELDS} == {f: episode[2][f] for f in VISIT_FIELDS}


def test_audit_visits_table_has_a_sparkline_per_agent_and_affordance(trained):
    out = ok("audit", "visits", "--db", str(trained.db), env={"COLUMNS": "160"}).stdout
    rows = [line for line in out.splitlines() if line.startswith("│") and line.split("│")[1].strip()]
    assert len(rows) == AGENTS  # one row per agent, a column per affordance
    assert all(line.count("│") == 2 + len(VISIT_FIELDS) for line in rows)  # agent + one per affordance
    assert all(any(ch in line for ch in "▁▂▃▄▅▆▇█") for line in rows)


@pytest.fixture
def tampered(trained, tmp_path) -> Path:
    copy = tmp_path / "tampered.db"
    shutil.copy(trained.db, copy)
    return copy


def sql(db: Path, statement: str, *params) -> None:
    with sqlite3.connect(db) as connection:
        connection.execute(statement, params)


def test_audit_baselines_flags_a_baseline_that_moves_without_a_stage_change(tampered):
    # Agent 1, at an episode whose stage is the same as the one before, gets a baseline nobody else has.
    untouched = json.loads(ok("audit", "baselines", "--db", str(tampered), "--json").stdout)
    stages = untouched["agents"][1]["curriculum_stage"]
    episode = next(e for e in range(2, len(stages) + 1) if stages[e - 1] == stages[e - 2])
    sql(
        tampered,
        "UPDATE agent_snapshots SET baseline_survival_steps = 55.5 WHERE agent_idx = 1 "
        "AND episode_pk = (SELECT id FROM episodes WHERE episode = ?)",
        episode,
    )
    report = json.loads(ok("audit", "baselines", "--db", str(tampered), "--json").stdout)
    flags = {(a["agent_idx"], f["flag"], f["episode"]) for a in report["agents"] for f in a["flags"]}
    assert (1, "baseline-disagrees", episode) in flags
    assert (1, "baseline-without-stage-change", episode) in flags
    assert {agent for agent, flag, _ in flags if flag == "baseline-disagrees"} == {1}


def test_audit_baselines_flags_survival_far_below_baseline_for_a_streak(tampered):
    sql(tampered, "UPDATE agent_snapshots SET survival_steps = 3 WHERE agent_idx = 0")
    report = json.loads(
        ok("audit", "baselines", "--agent", "0", "--streak", "4", "--db", str(tampered), "--json").stdout
    )
    below = [f for f in report["agents"][0]["flags"] if f["flag"] == "survival-below-baseline"]
    assert [f["episode"] for f in below] == [4]  # once per streak, where it reached 4 episodes
    assert "from episode 1" in below[0]["detail"]


def test_audit_rewards_passes_on_a_real_run(trained):
    result = ok("audit", "rewards", "--db", str(trained.db))
    assert f"{EPISODES * AGENTS} rewards checked, every reward matches" in result.stdout


def test_audit_rewards_catches_a_corrupted_reward(tampered):
    sql(
        tampered,
        "UPDATE agent_snapshots SET episode_reward = episode_reward + 1.0 WHERE agent_idx = 3 AND episode_pk = 5",
    )
    result = invoke("audit", "rewards", "--db", str(tampered), "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["checked"] == EPISODES * AGENTS
    assert [(m["episode"], m["agent_idx"]) for m in report["mismatches"]] == [(5, 3)]
    mismatch = report["mismatches"][0]
    assert mismatch["stored_reward"] == mismatch["expected_reward"] + 1.0
    table = invoke("audit", "rewards", "--db", str(tampered), "--episode", "5")
    assert table.exit_code == 1 and "episode 5 agent 3" in table.stdout
    assert table.stdout.rstrip().endswith("rewards checked, 1 mismatch")


# -- export ----------------------------------------------------------------------------------------


def test_export_csv_has_every_row_at_full_resolution(trained):
    rows = list(csv.DictReader(io.StringIO(ok("export", "--format", "csv", "--db", str(trained.db)).stdout)))
    assert len(rows) == EPISODES * AGENTS
    sent = [agent for message in trained.live for agent in json.loads(message)["agents"]]
    for row, agent in zip(rows, sent, strict=True):
        assert row["schema_version"] == str(SCHEMA_VERSION)
        for name in FIELD_NAMES[CURRENT_DTO]:
            value = agent[name]
            assert (float(row[name]) if isinstance(value, float) else type(value)(row[name])) == value


def test_export_jsonl_to_a_file_is_complete_and_says_so(trained, tmp_path):
    out = tmp_path / "run.jsonl"
    result = ok("export", "--format", "jsonl", "--out", str(out), "--db", str(trained.db))
    lines = out.read_bytes().splitlines()
    assert len(lines) == EPISODES * AGENTS
    first = json.loads(lines[0])
    assert first == {
        "run": trained.result.run,
        "schema_version": SCHEMA_VERSION,
        **json.loads(trained.live[0])["agents"][0],
    }
    assert f"wrote {EPISODES * AGENTS} rows" in result.stderr
    assert list(tmp_path.iterdir()) == [out]  # no partial file left behind


def test_export_never_overwrites_without_force(trained, tmp_path):
    out = tmp_path / "kept.csv"
    out.write_text("precious")
    one_line_error(invoke("export", "-f", "csv", "-o", str(out), "--db", str(trained.db)), "--force")
    assert out.read_text() == "precious"
    ok("export", "-f", "csv", "-o", str(out), "--force", "--db", str(trained.db))
    assert out.read_text().startswith("run,schema_version,")


# -- bad input: one line, exit 2, nothing changed or created ---------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay", "--episode", "99"], "has no episode 99 (episodes 1 to 8): pick another --episode"),
        (["replay", "--episode", "1", "--run", "7"], "no run 7 in"),
        (["replay", "--episode", "1", "--agent", "9"], "has no agent 9 (agents 0 to 3): fix --agent"),
        (["audit", "baselines", "--agent", "9"], "has no agent 9"),
        (["audit", "rewards", "--episode", "99"], "has no episode 99"),
        (["audit", "visits", "--agent", "9"], "has no agent 9"),
        (["audit", "visits", "--json", "--csv"], "--json and --csv"),
        (["episodes", "--run", "7"], "no run 7 in"),
        (["export", "-f", "csv", "--run", "7"], "no run 7 in"),
        (["episodes", "--last", "2", "--limit", "3"], "--last cannot be combined"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(trained, args, message):
    before = digest(trained.db)
    one_line_error(invoke(*args, "--db", str(trained.db)), message)
    assert digest(trained.db) == before


READ_COMMANDS = [
    ["runs"],
    ["episodes"],
    ["replay", "--episode", "1"],
    ["audit", "baselines"],
    ["audit", "rewards"],
    ["audit", "visits"],
    ["export", "--format", "csv"],
]


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_missing_database_is_an_error_and_is_not_created(tmp_path, command):
    missing = tmp_path / "nope.db"
    one_line_error(invoke(*command, "--db", str(missing)), f"no database at {missing}")
    assert not missing.exists()


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_read_commands_never_change_the_file(trained, command):
    before = digest(trained.db)
    files = sorted(p.name for p in trained.db.parent.iterdir())
    result = invoke(*command, "--db", str(trained.db))
    assert result.exit_code == 0, result.stderr
    assert digest(trained.db) == before
    assert sorted(p.name for p in trained.db.parent.iterdir()) == files


def test_empty_database_says_train_first(tmp_path):
    db = tmp_path / "new.db"
    ok("db", "upgrade", "--db", str(db))
    one_line_error(invoke("episodes", "--db", str(db)), "holds no runs yet: train first")
    assert json.loads(ok("runs", "--db", str(db), "--json").stdout) == []


def test_not_a_townlet_database(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all, not even close" * 100)
    before = digest(junk)
    one_line_error(invoke("runs", "--db", str(junk)), "is not a SQLite database")
    other = tmp_path / "other.db"
    sql(other, "CREATE TABLE notes (id INTEGER PRIMARY KEY)")
    one_line_error(invoke("replay", "-e", "1", "--db", str(other)), "is not a townlet database")
    assert digest(junk) == before


def test_bad_url_is_one_line(trained):
    one_line_error(invoke("runs", "--db", "nosuchdriver://x/y"), "nosuchdriver://x/y")


def test_database_older_or_newer_than_the_code(tampered):
    sql(tampered, "UPDATE townlet_alembic_version SET version_num = '0099'")
    one_line_error(invoke("runs", "--db", str(tampered)), "newer than this townlet")


def test_read_commands_work_on_postgresql(postgres_base_url):
    from tests.postgres_server import new_database

    url = new_database(postgres_base_url)
    settings = with_overrides(load_config(), "training", episodes=2, agents=3, seed=1, device="cpu")
    fake = FakeBroadcaster()
    TrainingSession(settings, db=url, sinks=[fake]).run()
    assert ok("replay", "--episode", "2", "--db", url, "--json").stdout_bytes == fake.messages[1] + b"\n"
    assert len(json.loads(ok("episodes", "--db", url, "--json").stdout)) == 2
    assert ok("export", "-f", "csv", "--db", url).stdout.count("\n") == 1 + 2 * 3
    assert "every reward matches" in ok("audit", "rewards", "--db", url).stdout
    assert json.loads(ok("audit", "baselines", "--agent", "1", "--db", url, "--json").stdout)["agents"][0][
        "episodes"
    ] == [1, 2]


# -- the read path loads neither torch nor SQLAlchemy ----------------------------------------------


def test_read_commands_do_not_import_torch(trained):
    code = (
        "import sys; from typer.testing import CliRunner; from townlet_cli.app import app\n"
        f"db = {str(trained.db)!r}\n"
        "for args in (['runs'], ['episodes'], ['replay', '-e', '2'], ['replay', '-e', '2', '--json'],\n"
        "             ['audit', 'baselines'], ['audit', 'baselines', '-a', '1', '--json'], ['audit', 'visits'],\n"
        "             ['export', '-f', 'jsonl']):\n"
        "    result = CliRunner().invoke(app, [*args, '--db', db])\n"
        "    assert result.exit_code == 0, (args, result.stderr)\n"
        "print(sorted(m for m in ('torch', 'sqlalchemy', 'alembic', 'numpy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_installed_entry_point_replays(trained):
    exe = Path(sys.executable).with_name("townlet-telemetry")
    result = subprocess.run(
        [str(exe), "replay", "--episode", "4", "--json", "--db", str(trained.db)], capture_output=True, check=True
    )
    assert result.stdout == trained.live[3] + b"\n"
