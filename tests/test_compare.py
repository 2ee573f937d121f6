"""``compare`` on real databases trained by ``train``: groups by config and by tag, one score per run computed
from the rollups (checked against the agent rows), the statistics those scores give, the config diff, the
per-agent view, the same bytes from PostgreSQL, and one-line refusals of bad input."""

import json
import sqlite3

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.helpers import cli_ok
from tests.postgres_server import new_database
from townlet.analysis import statistics as stats
from townlet_cli.app import app

runner = CliRunner()
EPISODES = 8


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> str:
    """Two configs (learning rate 1e-3 and 3e-3) x three seeds each, 8 episodes x 3 agents, tagged a and b;
    config B's runs named 'fast lr' (a group is labelled by its runs' shared name, else their shared tag)."""
    where = tmp_path_factory.mktemp("sweep")
    short = where / "short.toml"
    short.write_text("[curriculum]\nwindow = 2\nadvance_threshold = 0.5\n")
    fast = where / "fast.toml"
    fast.write_text(short.read_text() + "[population]\nlearning_rate = 0.003\n")
    db = str(where / "sweep.db")
    for config, tag in ((short, "a"), (fast, "b")):
        for seed in range(3):
            extra = ("--name", "fast lr") if tag == "b" else ()
            cli_ok("train", "-n", str(EPISODES), "-a", "3", "-s", str(seed), "-d", "cpu", "-c", str(config),
                   "--tag", tag, *extra, "--db", db)  # fmt: skip
    return db


def compared(db: str, *args: str) -> dict:
    return json.loads(cli_ok("compare", "--json", "--reps", "2000", *args, "--db", db).stdout)


def score_from_agent_rows(db: str, run: int, lo: int, hi: int) -> float:
    """The run's score straight from its agent rows: per episode the agents' mean survival, then the mean."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        rows = c.execute(
            "SELECT avg(a.survival_steps) FROM episodes e JOIN agent_snapshots a ON a.episode_pk = e.id "
            "WHERE e.run_id = ? AND e.episode BETWEEN ? AND ? GROUP BY e.episode",
            (run, lo, hi),
        ).fetchall()
    return float(np.mean([r[0] for r in rows]))


def test_runs_of_one_config_form_a_group_and_their_numbers_are_the_statistics_of_their_scores(sweep):
    report = compared(sweep, "--last", "5")
    assert report["window"] == {"first_episode": 4, "last_episode": 8, "episodes": 5, "asked": "last 5",
                                "common_last_episode": 8}  # fmt: skip
    a, b = report["groups"]
    assert (a["runs"], a["seeds"], b["runs"], b["label"]) == ([1, 2, 3], [0, 1, 2], [4, 5, 6], "fast lr")
    for group in (a, b):
        expected = [score_from_agent_rows(sweep, run, 4, 8) for run in group["runs"]]
        assert group["scores"] == pytest.approx(expected, rel=1e-12)
        interval = stats.iqm_interval(np.array(group["scores"]), reps=2000, seed=0)
        assert (group["iqm"], group["iqm_ci"]) == (interval.estimate, [interval.low, interval.high])
        assert group["std"] == pytest.approx(np.std(expected, ddof=1)) and group["note"] is None
        assert len(group["curve"]) == EPISODES and group["curve"][-1]["last_episode"] == EPISODES
        # every (run, agent) at each stage it trained at in the window: at least the 9 of the 3 runs x 3 agents
        assert sum(s["agents"] for s in group["agents"]) >= 9
        for s in group["agents"]:
            q = s["survival_minus_baseline"]
            assert q["p10"] <= q["p25"] <= q["p50"] <= q["p75"] <= q["p90"]
    pair = report["improvement"][0]
    expected = stats.improvement_interval(np.array(a["scores"]), np.array(b["scores"]), reps=2000, seed=0)
    assert (pair["x"], pair["y"], pair["probability"]) == ("a", "fast lr", expected.estimate)
    assert report["config_diff"] == [{"key": "population.learning_rate", "values": [0.001, 0.003]}]


def test_group_by_tag_at_one_episode_and_the_csv_rows(sweep):
    report = compared(sweep, "--tag", "a", "--tag", "b", "--group-by", "tag", "--at", "3", "--metric", "reward")
    assert [g["label"] for g in report["groups"]] == ["a", "b"]
    assert report["window"]["first_episode"] == report["window"]["last_episode"] == 3
    csv = cli_ok("compare", "--csv", "--reps", "100", "1", "4", "--db", sweep).stdout.splitlines()
    assert csv[0] == "group,run,seed,score" and [line.split(",")[1] for line in csv[1:]] == ["1", "4"]


def test_one_run_a_group_says_there_is_no_interval_in_the_table_and_the_json(sweep):
    report = compared(sweep, "1", "4")
    assert [g["iqm_ci"] for g in report["groups"]] == [None, None]
    assert report["groups"][0]["note"] == "1 run: an interval needs at least 3"
    assert report["improvement"][0]["ci"] is None
    table = cli_ok("compare", "1", "4", "--reps", "100", "--db", sweep).stdout
    assert "n/a" in table and "1 run: an interval needs at least 3" in table


def same_report(x, y) -> bool:
    """Equal reports, numbers to 1e-12: PostgreSQL's avg() of doubles rounds its last bit its own way."""
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(same_report(x[k], y[k]) for k in x)
    if isinstance(x, list):
        return len(x) == len(y) and all(same_report(a, b) for a, b in zip(x, y, strict=True))
    if isinstance(x, float) and isinstance(y, float):
        return x == pytest.approx(y, rel=1e-12, abs=1e-12)
    return x == y


def test_the_same_report_from_postgresql_and_db_copy_carries_names_and_tags(sweep, postgres_base_url):
    team = new_database(postgres_base_url)
    cli_ok("db", "copy", sweep, team)
    listed = [(r["name"], r["tags"]) for r in json.loads(cli_ok("runs", "--json", "--db", team).stdout)]
    assert listed == [(None, ["a"])] * 3 + [("fast lr", ["b"])] * 3
    args = ("compare", "--json", "--reps", "500", "--profile")
    assert same_report(json.loads(cli_ok(*args, "--db", team).stdout), json.loads(cli_ok(*args, "--db", sweep).stdout))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--metric", "speed"), "no metric 'speed': choose one of survival, reward, survival-over-baseline"),
        (("--last", "0"), "--last takes at least 1 episode"),
        (("--reps", "0"), "--reps takes at least 1 resample"),
        (("--where", "training.agents"), "--where takes KEY=VALUE"),
        (("--where", "training.agnts=3"), "no run's config has the key 'training.agnts': did you mean"),
        (("--tag", "nope"), "no run is tagged 'nope'"),
        (("--at", "99"), "episode 99 is beyond run 1's last episode 8: choose --at 8 or less"),
        (("--group-by", "seed"), "--group-by takes config or tag"),
        (("--group-by", "tag"), "--group-by tag groups the runs of each --tag given"),
        (("42",), "no run 42 in"),
        (("--last", "3", "--at", "2"), "--last K and --at EPISODE both choose the window"),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, tuple) else None,
)
def test_bad_input_is_one_line_naming_the_fix(sweep, args, says):
    result = runner.invoke(app, ["compare", *args, "--db", sweep])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {says}"), result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == ""
