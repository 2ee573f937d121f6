"""The dashboard's JSON endpoints through Starlette's test client, against real databases: each answers the bytes
its matching ``--json`` command prints, bad input is one line of JSON, and nothing is written."""

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from tests.helpers import v1_copy
from townlet.config import load_config, with_overrides
from townlet.training.session import TrainingSession
from townlet.web.app import STATIC, create_app
from townlet_cli.app import app as cli

runner = CliRunner()
AGENTS, EPISODES = 4, 6


def train_into(db: str, episodes: int = EPISODES, seed: int = 3) -> None:
    settings = with_overrides(load_config(), "training", episodes=episodes, agents=AGENTS, seed=seed, device="cpu")
    settings = with_overrides(settings, "curriculum", window=2, advance_threshold=0.01)
    assert TrainingSession(settings, db=db).run().status == "finished"


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    """Two real runs: run 1 (6 episodes x 4 agents, the curriculum moving) and run 2 (2 episodes)."""
    path = tmp_path_factory.mktemp("web") / "townlet.db"
    train_into(str(path))
    train_into(str(path), episodes=2, seed=4)
    return path


@pytest.fixture
def client(db) -> TestClient:
    return TestClient(create_app(str(db)), base_url="http://127.0.0.1")


def cli_bytes(*args: str) -> bytes:
    result = runner.invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("endpoint", "command"),
    [
        ("/api/runs", ["runs", "--json"]),
        ("/api/runs/1/episodes", ["episodes", "--run", "1", "--json"]),
        ("/api/runs/1/episodes/4", ["replay", "--run", "1", "--episode", "4", "--json"]),
        ("/api/runs/2/episodes/1", ["replay", "--run", "2", "--episode", "1", "--json"]),
        ("/api/runs/1/rewards", ["audit", "rewards", "--run", "1", "--json"]),
        ("/api/runs/1/recordings", ["recordings", "--run", "1", "--json"]),
    ],
)
def test_an_endpoint_answers_the_bytes_of_its_json_command(db, client, endpoint, command):
    response = client.get(endpoint)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.content == cli_bytes(*command, "--db", str(db))


def test_an_agent_is_its_baseline_and_visit_audits_and_its_rewards(db, client):
    body = client.get("/api/runs/1/agents/2").json()
    assert body["baselines"] == json.loads(cli_bytes("audit", "baselines", "--run", "1", "--agent", "2", "--json",
                                                     "--db", str(db)))  # fmt: skip
    assert body["visits"] == json.loads(cli_bytes("audit", "visits", "--run", "1", "--agent", "2", "--json",
                                                  "--db", str(db)))  # fmt: skip
    exported = [json.loads(line) for line in cli_bytes("export", "--run", "1", "--format", "jsonl", "--db", str(db))
                .splitlines()]  # fmt: skip
    assert body["episode_reward"] == [row["episode_reward"] for row in exported if row["agent_idx"] == 2]


def test_a_run_is_its_row_and_its_episodes_within_the_point_budget(db, client):
    body = client.get("/api/runs/1").json()
    assert body["run"] == json.loads(cli_bytes("runs", "--json", "--db", str(db)))[0]
    every = json.loads(cli_bytes("episodes", "--run", "1", "--json", "--db", str(db)))
    assert body["points"] == 1000 and len(every) == 6  # fewer episodes than points: one point per episode
    assert [b["episode"] for b in body["episodes"]] == [e["episode"] for e in every]
    assert body["episodes"] == json.loads(
        cli_bytes("episodes", "--run", "1", "--points", "1000", "--json", "--db", str(db))
    )
    for point, episode in zip(body["episodes"], every, strict=True):
        assert point["episodes"] == 1 and point["first_episode"] == episode["episode"]
        assert all(point[k] == episode[k] for k in episode if k in point and k != "episodes")
    summarised = client.get("/api/runs/1?points=2").json()["episodes"]
    assert summarised == json.loads(cli_bytes("episodes", "--run", "1", "--points", "2", "--json", "--db", str(db)))
    assert [(p["first_episode"], p["episode"], p["episodes"]) for p in summarised] == [(1, 3, 3), (4, 6, 3)]
    assert summarised[0]["survival_max"] == max(e["survival_max"] for e in every[:3])
    assert summarised[1]["reward_min"] == min(e["reward_min"] for e in every[3:])


@pytest.mark.parametrize("points", ["0", "1", "100001", "x"])
def test_a_point_budget_out_of_range_is_a_400_naming_it(client, points):
    response = client.get(f"/api/runs/1?points={points}")
    assert response.status_code == 400 and "points" in response.json()["error"]


def test_a_runs_flags_are_the_baseline_audits_flags(tmp_path):
    db = tmp_path / "t.db"
    train_into(str(db))
    with sqlite3.connect(db) as connection:  # agent 1 at episode 2: a baseline nobody else has
        connection.execute("UPDATE agent_snapshots SET baseline_survival_steps = 55.5 WHERE agent_idx = 1 "
                           "AND episode_pk = (SELECT id FROM episodes WHERE episode = 2)")  # fmt: skip
    cli_bytes("db", "check", "--repair", "--db", str(db))  # the maintained flags follow the changed rows
    flags = TestClient(create_app(str(db)), base_url="http://127.0.0.1").get("/api/runs/1/flags").json()
    audit = json.loads(cli_bytes("audit", "baselines", "--run", "1", "--json", "--db", str(db)))
    assert flags["thresholds"] == audit["thresholds"] == {"below": 0.5, "streak": 5}
    assert flags["flags"] == [{"agent_idx": a["agent_idx"], **f} for a in audit["agents"] for f in a["flags"]]
    assert {(f["agent_idx"], f["flag"], f["episode"]) for f in flags["flags"]} >= {(1, "baseline-disagrees", 2)}


def test_episodes_carry_the_mean_baseline_and_epsilon(db, client):
    episodes = client.get("/api/runs/1/episodes").json()
    exported = [json.loads(line) for line in cli_bytes("export", "--run", "1", "--format", "jsonl", "--db", str(db))
                .splitlines()]  # fmt: skip
    for episode in episodes:
        rows = [r for r in exported if r["episode"] == episode["episode"]]
        assert episode["baseline_mean"] == pytest.approx(sum(r["baseline_survival_steps"] for r in rows) / len(rows))
        assert episode["epsilon_mean"] == pytest.approx(sum(r["epsilon"] for r in rows) / len(rows))


def test_the_heat_map_at_full_resolution_is_every_agents_survival(db, client):
    heat = client.get("/api/runs/1/heatmap?columns=1000&rows=64").json()
    assert (heat["rows"], heat["columns"], heat["downsampled"]) == (AGENTS, EPISODES, False)
    exported = [json.loads(line) for line in cli_bytes("export", "--run", "1", "--format", "jsonl", "--db", str(db))
                .splitlines()]  # fmt: skip
    for row in exported:
        assert heat["survival"][row["agent_idx"]][row["episode"] - 1] == row["survival_steps"]


def test_the_heat_map_is_downsampled_by_the_server_and_says_so(db, client):
    heat = client.get("/api/runs/1/heatmap?columns=2&rows=2").json()
    assert (heat["rows"], heat["columns"], heat["downsampled"]) == (2, 2, True)
    assert (heat["agents_per_row"], heat["episodes_per_column"]) == (2.0, 3.0)
    full = client.get("/api/runs/1/heatmap?columns=1000").json()["survival"]
    cell = [full[a][e] for a in (0, 1) for e in (0, 1, 2)]  # agents 0-1, episodes 1-3
    assert heat["survival"][0][0] == round(sum(cell) / len(cell))


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/runs/9", 404, "no run 9 in "),
        ("/api/runs/1/episodes/99", 404, "run 1 has no episode 99"),
        ("/api/runs/1/agents/99", 404, "run 1 has no agent 99"),
        ("/api/runs/x", 400, "run must be an integer, got 'x'"),
        ("/api/runs/1/agents/-1", 400, "agent must be between 0 and"),
        ("/api/runs/1/episodes/1e3", 400, "episode must be an integer, got '1e3'"),
        ("/api/runs/1/heatmap?columns=wide", 400, "columns must be an integer, got 'wide'"),
        ("/api/nothing/here", 404, "no such endpoint: /api/nothing/here"),
    ],
)
def test_bad_input_is_one_line_of_json(client, path, status, message):
    response = client.get(path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"] and message in body["error"] and "\n" not in body["error"]


@pytest.mark.parametrize("path", ["/", "/runs/1", "/runs/1/agents/3", "/runs/2/episodes/1", "/runs/77"])
def test_every_page_path_is_the_one_page_app_with_a_strict_policy(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js"' in response.text
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "http" not in policy


def test_the_live_stream_is_the_only_other_place_the_page_may_connect_to(db):
    client = TestClient(create_app(str(db), live="ws://127.0.0.1:8765"), base_url="http://127.0.0.1")
    assert "connect-src 'self' ws://127.0.0.1:8765;" in client.get("/").headers["content-security-policy"]
    assert client.get("/api/config").json()["live"] == "ws://127.0.0.1:8765"


def test_a_missing_static_file_is_a_plain_404_not_the_page(client):
    response = client.get("/static/nothing.js")
    assert response.status_code == 404 and "no such file: /static/nothing.js" in response.text


def test_the_chart_library_is_served_from_the_package_with_its_licence(client):
    script = client.get("/static/vendor/uPlot.iife.min.js")
    assert script.status_code == 200
    assert script.content == (STATIC / "vendor" / "uPlot.iife.min.js").read_bytes()
    assert "MIT License" in client.get("/static/vendor/uPlot.LICENSE").text


def test_browsing_changes_nothing_on_disk(db, client):
    before, files = digest(db), sorted(p.name for p in db.parent.iterdir())
    for path in ("/api/runs", "/api/runs/1", "/api/runs/1/heatmap", "/api/runs/1/agents/1", "/api/runs/1/rewards",
                 "/api/runs/1/episodes/2", "/runs/1"):  # fmt: skip
        assert client.get(path).status_code == 200
    assert digest(db) == before and sorted(p.name for p in db.parent.iterdir()) == files


def test_a_v1_database_upgraded_serves_its_v1_episodes_as_version_1(tmp_path):
    db = v1_copy(tmp_path)
    assert runner.invoke(cli, ["db", "upgrade", "--db", str(db), "--no-backup"]).exit_code == 0
    client = TestClient(create_app(str(db)), base_url="http://127.0.0.1")
    envelope = client.get("/api/runs/1/episodes/1")
    assert envelope.json()["schema_version"] == 1
    assert envelope.content == cli_bytes("replay", "--run", "1", "--episode", "1", "--json", "--db", str(db))


def test_the_read_endpoints_on_postgresql_answer_what_the_commands_print(db_url):
    train_into(db_url, episodes=3)
    client = TestClient(create_app(db_url), base_url="http://127.0.0.1")
    for endpoint, command in (
        ("/api/runs", ["runs", "--json"]),
        ("/api/runs/1/episodes", ["episodes", "--run", "1", "--json"]),
        ("/api/runs/1/episodes/2", ["replay", "--run", "1", "--episode", "2", "--json"]),
    ):
        assert client.get(endpoint).content == cli_bytes(*command, "--db", db_url)
    heat = client.get("/api/runs/1/heatmap").json()
    assert (heat["rows"], heat["columns"]) == (AGENTS, 3)
    assert client.get("/api/runs/1/agents/1").json()["baselines"]["agents"][0]["agent_idx"] == 1
    # The stored config comes back from PostgreSQL as an object, from SQLite as JSON text: the same answer.
    assert client.get("/api/runs/1/config").json()["curriculum"]["window"] == 2
    (overview,) = client.get("/api/overview").json()
    assert overview["differs"] == {} and overview["last_survival_mean"] is not None
    assert sorted(a["agent_idx"] for a in client.get("/api/runs/1/agents").json()["agents"]) == list(range(AGENTS))
    assert client.get("/api/runs/1/sessions").json()[0]["first_episode"] == 1


def test_run_answers_are_fresh_when_the_run_grows(tmp_path):
    db = tmp_path / "t.db"
    train_into(str(db), episodes=2)
    client = TestClient(create_app(str(db)), base_url="http://127.0.0.1")
    assert [e["episode"] for e in client.get("/api/runs/1").json()["episodes"]] == [1, 2]
    assert client.get("/api/runs/1/heatmap").json()["columns"] == 2
    resumed = runner.invoke(cli, ["train", "--episodes", "1", "--device", "cpu", "--db", str(db), "--resume", "1"])
    assert resumed.exit_code == 0, resumed.output
    assert [e["episode"] for e in client.get("/api/runs/1").json()["episodes"]] == [1, 2, 3]
    assert client.get("/api/runs/1/heatmap").json()["columns"] == 3
    assert client.get("/api/runs/1/rewards").json()["checked"] == 3 * AGENTS


def test_big_answers_are_compressed_for_browsers_that_accept_it(client):
    response = client.get("/api/runs/1/episodes", headers={"Accept-Encoding": "gzip"})
    assert response.headers.get("content-encoding") == "gzip"
    assert response.content == client.get("/api/runs/1/episodes", headers={"Accept-Encoding": "identity"}).content


def test_the_overview_tells_runs_apart_by_the_settings_that_differ(tmp_path):
    path = str(tmp_path / "t.db")
    train_into(path, episodes=2)
    settings = with_overrides(load_config(), "training", episodes=3, agents=AGENTS, seed=5, device="cpu")
    settings = with_overrides(settings, "population", learning_rate=0.005)
    assert TrainingSession(settings, db=path).run().status == "finished"
    client = TestClient(create_app(path), base_url="http://127.0.0.1")
    overview = client.get("/api/overview").json()
    runs = json.loads(cli_bytes("runs", "--json", "--db", path))
    assert [r["id"] for r in overview] == [2, 1]  # newest first
    for shown, listed in zip(overview, reversed(runs), strict=True):
        assert {k: shown[k] for k in listed} == listed  # every field `runs --json` has, unchanged
        last = json.loads(cli_bytes("episodes", "--run", str(listed["id"]), "--last", "1", "--json", "--db", path))[0]
        assert shown["last_survival_mean"] == last["survival_mean"]
        assert shown["last_baseline_mean"] == last["baseline_mean"]
        assert shown["duration_s"] > 0
    # The seed, the episodes and the agents have columns or never tell learning apart: only what differs else.
    differing = {"curriculum.advance_threshold", "curriculum.window", "population.learning_rate"}
    assert set(overview[0]["differs"]) == differing
    assert overview[0]["differs"]["population.learning_rate"] == 0.005
    assert overview[1]["differs"]["population.learning_rate"] == 0.001


def test_a_run_is_trained_with_the_config_it_stored(db, client):
    stored = client.get("/api/runs/1/config").json()
    assert stored["training"]["agents"] == AGENTS and stored["curriculum"]["window"] == 2
    assert stored["population"]["learning_rate"] == load_config().population.learning_rate


def test_the_agents_table_is_worst_first_over_the_last_episodes(db, client):
    from townlet.persistence.reader import TelemetryReader

    answer = client.get("/api/runs/1/agents").json()
    assert answer["last_episodes"] == 10  # run 1 has 6: all of them count
    with TelemetryReader(str(db)) as reader:
        columns = ["survival_steps", "baseline_survival_steps"]
        rows = [row for batch in reader.agent_columns(reader.run(1), columns, None) for row in batch]
    by_agent: dict[int, list[tuple[int, float]]] = {}
    for _episode, agent, survival, baseline in rows:
        by_agent.setdefault(agent, []).append((survival, baseline))
    expected = sorted(
        (sum(v[0] for v in values) / sum(v[1] for v in values), agent) for agent, values in by_agent.items()
    )
    assert [a["agent_idx"] for a in answer["agents"]] == [agent for _, agent in expected]
    for shown, (ratio, _) in zip(answer["agents"], expected, strict=True):
        assert shown["survival_over_baseline"] == pytest.approx(ratio)
        assert shown["episodes"] == EPISODES


def test_the_agents_table_reads_only_the_last_episodes(tmp_path):
    from townlet.audit.reports import agents_report
    from townlet.persistence.reader import TelemetryReader

    path = str(tmp_path / "t.db")
    train_into(path, episodes=4)
    with TelemetryReader(path) as reader:
        run = reader.run(1)
        last_two = agents_report(reader, run, last=2)
        final = {a["agent_idx"]: a["survival_mean"] for a in last_two["agents"]}
        episodes = [row for batch in reader.agent_columns(run, ["survival_steps"], None) for row in batch]
    for agent, mean in final.items():
        values = [s for e, a, s in episodes if a == agent and e >= 3]
        assert mean == sum(values) / 2


def test_a_resumed_run_has_two_sessions(tmp_path):
    import time

    path = str(tmp_path / "t.db")
    train_into(path, episodes=3)
    time.sleep(2.5)  # a resume starts a new process, seconds after the last session ended
    settings = with_overrides(load_config(), "training", episodes=2, agents=AGENTS, seed=3, device="cpu")
    settings = with_overrides(settings, "curriculum", window=2, advance_threshold=0.01)
    assert TrainingSession(settings, db=path, resume=1).run().status == "finished"
    client = TestClient(create_app(path), base_url="http://127.0.0.1")
    sessions = client.get("/api/runs/1/sessions").json()
    assert [s["first_episode"] for s in sessions] == [1, 4]
    assert sessions[0]["gap_s"] is None and sessions[1]["gap_s"] >= 2.0


def test_the_documented_config_sample_is_what_the_server_answers(client):
    import re

    docs = (Path(__file__).resolve().parents[1] / "docs" / "telemetry_schema.md").read_text()
    sample = re.search(r"\| `GET /api/config` \| `(\{.*?\})` \|", docs)
    assert sample is not None
    documented = json.loads(sample[1].replace('"ws://..." or null', "null"))
    answered = client.get("/api/config").json()
    assert documented == answered  # the version too: docs say what this townlet answers


def test_a_recorded_episode_is_served_as_replay_steps_prints_it_and_whole_for_the_player(db, client):
    episode = json.loads(cli_bytes("recordings", "--run", "1", "--json", "--db", str(db)))["recordings"][-1]["episode"]
    steps = client.get(f"/api/runs/1/episodes/{episode}/steps?agent=2")
    assert steps.status_code == 200 and steps.headers["content-type"] == "application/x-ndjson"
    printed = cli_bytes(
        "replay", "--run", "1", "-e", str(episode), "--steps", "--agent", "2", "--json", "--db", str(db)
    )
    assert steps.content == printed
    player = client.get(f"/api/runs/1/episodes/{episode}/recording").json()
    assert player["header"]["grid_size"] == 8 and [a["agent_idx"] for a in player["agents"]] == list(range(AGENTS))
    lines = [json.loads(line) for line in printed.splitlines()]
    agent = player["agents"][2]
    assert (agent["rows"], agent["cols"]) == ([s["row"] for s in lines], [s["col"] for s in lines])
    assert agent["meters"][0] == [s["meter_energy"] for s in lines]
    unrecorded = min(set(range(1, EPISODES + 1)) - {r["episode"] for r in json.loads(
        cli_bytes("recordings", "--run", "1", "--json", "--db", str(db)))["recordings"]})  # fmt: skip
    missing = client.get(f"/api/runs/1/episodes/{unrecorded}/recording")
    assert missing.status_code == 404 and f"episode {unrecorded} was not recorded" in missing.json()["error"]
