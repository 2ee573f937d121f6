"""The CLI's edge: every refusal is one line on stderr with exit code 2, never a traceback or a usage box."""

import pytest
from typer.testing import CliRunner

from townlet import __version__
from townlet.persistence import revisions
from townlet.telemetry.dto import SCHEMA_VERSION
from townlet_cli.app import app

runner = CliRunner()

TOO_BIG = str(2**63)


@pytest.fixture(autouse=True)
def _database_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("TOWNLET_DB", str(tmp_path / "townlet.db"))


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr and "╭" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["train", "--episodes", "0"], "--episodes"),
        (["train", "--agents", "abc"], "'abc' is not a valid"),
        (["export", "--format", "xml"], "'xml' is not one of"),
        (["audit", "baselines", "--streak", "0"], "--streak"),
        (["replay"], "Missing option '--episode'"),
        (["runs", "--no-such-flag"], "No such option: --no-such-flag"),
        (["no-such-command"], "No such command 'no-such-command'"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_usage_errors_are_one_line_naming_help(args, fragment):
    result = runner.invoke(app, args)
    assert_one_line_error(result, fragment, "--help")


@pytest.mark.parametrize(
    "args",
    [
        ["replay", "--episode", TOO_BIG],
        ["episodes", "--run", TOO_BIG],
        ["audit", "baselines", "--agent", TOO_BIG],
        ["episodes", "--limit", TOO_BIG],
        ["train", "--agents", TOO_BIG],
        ["train", "--seed", TOO_BIG],
        ["train", "--resume", TOO_BIG],
    ],
    ids=lambda a: " ".join(a[:-1]),
)
def test_integers_beyond_64_bits_are_refused_in_one_line(args, tmp_path):
    result = runner.invoke(app, args)
    assert_one_line_error(result, str(2**63 - 1))
    assert not (tmp_path / "townlet.db").exists()


def test_help_is_unchanged_by_the_one_line_errors():
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    assert "--episodes" in result.stdout and "Usage" in result.stdout


def test_version_names_package_schema_and_revision():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        f"townlet-telemetry {__version__} (telemetry schema {SCHEMA_VERSION}, "
        f"database revision {revisions.HEAD_REVISION})"
    )


def test_shell_completion_can_be_installed():
    result = runner.invoke(app, ["--help"])
    assert "--install-completion" in result.stdout
    assert "--show-completion" in result.stdout


def test_config_that_is_a_directory_is_one_line(tmp_path):
    result = runner.invoke(app, ["train", "--config", str(tmp_path)])
    assert_one_line_error(result, f"config file {tmp_path} is a directory")
    assert not (tmp_path / "townlet.db").exists()


def test_config_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes("[training]\n# caf\xe9\nagents = 2\n".encode("latin-1"))
    result = runner.invoke(app, ["train", "--config", str(path)])
    assert_one_line_error(result, f"config file {path} is not UTF-8 text")


def test_train_help_shows_the_defaults_the_config_supplies():
    from townlet.config import TrainingConfig

    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    defaults = TrainingConfig()
    for value in (defaults.episodes, defaults.agents, defaults.seed, defaults.device):
        assert f"[config default: {value}]" in result.stdout


def test_train_on_a_truncated_database_is_one_line_and_leaves_it_alone(tmp_path):
    db = tmp_path / "t.db"
    trained = runner.invoke(app, ["train", "--episodes", "3", "--agents", "4", "--device", "cpu", "--db", str(db)])
    assert trained.exit_code == 0, trained.output
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])  # a copy cut short (a full disk, an interrupted scp)
    before = db.read_bytes()
    for command in (["train", "--episodes", "1", "--device", "cpu"], ["runs"], ["replay", "--episode", "3"]):
        result = runner.invoke(app, [*command, "--db", str(db)])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        assert "malformed" in result.stderr or "not a SQLite database" in result.stderr
    assert db.read_bytes() == before
