"""`runs` on a database of many runs: the table shows the newest ones and says how to see the rest; `episodes
--points` refuses a budget out of range in one line."""

import pytest
from typer.testing import CliRunner

from tests.helpers import trained
from townlet.persistence.store import TelemetryStore
from townlet_cli.app import app
from townlet_cli.runs import TABLE_RUNS


def test_the_table_shows_the_newest_runs_and_json_all_of_them(tmp_path):
    db = tmp_path / "many.db"
    with TelemetryStore.open(str(db), write=True) as store:
        for i in range(TABLE_RUNS + 3):
            run = store.create_run(run_uuid=f"{i:032x}", seed=i, device="cpu", num_agents=1, config={})
            store.set_run_status(run, "finished")
    runner = CliRunner()
    table = runner.invoke(app, ["runs", "--db", str(db)], terminal_width=200)
    assert table.exit_code == 0, table.output
    ids = [cell for line in table.stdout.splitlines() if line.startswith("│") and (cell := line.split("│")[1].strip())]
    assert ids == [str(i) for i in range(4, TABLE_RUNS + 4)]
    assert f"the newest {TABLE_RUNS} of {TABLE_RUNS + 3} runs; --all tables them all" in table.stdout
    every = runner.invoke(app, ["runs", "--all", "--db", str(db)], terminal_width=200)
    assert len([line for line in every.stdout.splitlines() if line.startswith("│") and line.split("│")[1].strip()]) == (
        TABLE_RUNS + 3
    )
    assert "the newest" not in every.stdout
    listed = runner.invoke(app, ["runs", "--json", "--db", str(db)])
    assert listed.stdout.count('"run_uuid"') == TABLE_RUNS + 3


@pytest.mark.parametrize("points", ["0", "1", "100001", "x"])
def test_a_point_budget_out_of_range_is_one_line_exit_2(tmp_path, points):
    db = trained(tmp_path / "t.db", episodes=2, agents=2)
    result = CliRunner().invoke(app, ["episodes", "--points", points, "--db", str(db)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "--points" in result.stderr


def test_points_cannot_be_combined_with_a_page_of_episodes(tmp_path):
    db = trained(tmp_path / "t.db", episodes=2, agents=2)
    result = CliRunner().invoke(app, ["episodes", "--points", "5", "--last", "1", "--db", str(db)])
    assert result.exit_code == 2 and "--points summarises the whole run" in result.stderr
