"""The whole-run audits stream the columns they need; a stored value townlet would never write is refused in one
line whichever way it is read (whole rows for replay and export, columns for the audits)."""

import pytest
from typer.testing import CliRunner

from tests.helpers import tamper, trained
from townlet_cli.app import app

runner = CliRunner()


@pytest.fixture
def tampered(tmp_path):
    db = trained(tmp_path / "t.db", episodes=3, agents=3)
    tamper(db, "UPDATE agent_snapshots SET survival_steps = -5 WHERE agent_idx = 1 AND episode_pk = 2")
    return db


@pytest.mark.parametrize(
    "command",
    [["audit", "rewards"], ["audit", "baselines"], ["audit", "visits", "--json"], ["export", "-f", "jsonl"],
     ["replay", "--episode", "2"]],
    ids=lambda c: " ".join(c),
)  # fmt: skip
def test_a_value_townlet_would_never_write_is_refused_in_one_line(tampered, command):
    result = runner.invoke(app, [*command, "--run", "1", "--db", str(tampered)])
    if command[:2] == ["audit", "visits"]:  # reads the visit columns only: the damaged survival is not among them
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1
    assert "holds a row townlet would never write" in result.stderr and "survival_steps" in result.stderr
    assert "-5" in result.stderr


def test_the_reward_audit_finds_a_changed_reward_among_many_batches(tmp_path):
    db = trained(tmp_path / "t.db", episodes=4, agents=5)
    tamper(db, "UPDATE agent_snapshots SET episode_reward = episode_reward + 3 WHERE agent_idx = 4 "
               "AND episode_pk = (SELECT id FROM episodes WHERE episode = 3)")  # fmt: skip
    result = runner.invoke(app, ["audit", "rewards", "--db", str(db)])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0].startswith("episode 3 agent 4: stored reward ")
    assert "20 rewards checked, 1 mismatch" in result.stdout
