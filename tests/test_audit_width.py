"""The read tables fit the terminal: `audit` sparklines end at the latest episode, `replay` fits 80 columns."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from townlet.audit.sparkline import sparkline
from townlet_cli.app import app
from townlet_cli.audit import bars_that_fit, sparkline_width

runner = CliRunner()
EPISODES = 60


@pytest.fixture(scope="module")
def long_run(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("wide") / "t.db"
    result = runner.invoke(app, ["train", "--episodes", str(EPISODES), "--agents", "2", "--device", "cpu",
                                 "--db", str(db)])  # fmt: skip
    assert result.exit_code == 0, result.output
    return db


@pytest.mark.slow
@pytest.mark.parametrize("columns", [80, 100, 120])
def test_sparklines_fit_the_terminal_and_end_at_the_last_episode(long_run, columns):
    result = runner.invoke(app, ["audit", "baselines", "--db", str(long_run)], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(line) <= columns for line in lines), max(lines, key=len)
    assert "…" not in result.stdout
    report = json.loads(runner.invoke(app, ["audit", "baselines", "--json", "--db", str(long_run)]).stdout)
    width = sparkline_width(columns)
    assert width < EPISODES  # bucketed: every episode, the latest included, is in some bar
    for agent in report["agents"]:
        survival = agent["survival_steps"]
        assert f"s {sparkline(survival, width)}" in result.stdout
    assert f"averaged ({width} bars)" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("columns", [80, 120])
def test_visit_sparklines_fit_the_terminal_too(long_run, columns):
    result = runner.invoke(app, ["audit", "visits", "--db", str(long_run)], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    assert all(len(line) <= columns for line in result.stdout.splitlines())
    assert "…" not in result.stdout
    report = json.loads(runner.invoke(app, ["audit", "visits", "--json", "--db", str(long_run)]).stdout)
    width = bars_that_fit(columns, columns=5, text=5, sparklines=4)
    for agent in report["agents"]:
        assert sparkline(agent["visits"]["bed"], width, from_zero=True) in result.stdout


@pytest.mark.slow
def test_replay_table_fits_80_columns_with_whole_headers(long_run):
    result = runner.invoke(app, ["replay", "--episode", str(EPISODES), "--db", str(long_run)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert all(len(line) <= 80 for line in result.stdout.splitlines())
    assert "…" not in result.stdout
    assert all(name in result.stdout for name in ("survival", "reward", "cause", "meters", "visits", "entropy"))
