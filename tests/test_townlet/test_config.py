"""Configuration: TOML over frozen defaults, flags over TOML, one-line errors naming the key."""

import dataclasses
from pathlib import Path

import pytest

from townlet.config import TownletConfig, load_config, with_overrides
from townlet.errors import ConfigError

DEFAULT_TOML = Path(__file__).resolve().parents[2] / "configs" / "default.toml"


def test_shipped_default_toml_equals_the_built_in_defaults():
    assert load_config(DEFAULT_TOML) == load_config(None) == TownletConfig()


def test_the_0_11_learner_config_differs_from_the_default_in_the_learner_alone():
    old = load_config(DEFAULT_TOML.with_name("learner_0_11.toml"))
    assert dataclasses.replace(old, population=TownletConfig().population) == TownletConfig()
    new = dataclasses.asdict(TownletConfig().population)
    changed = {k: v for k, v in dataclasses.asdict(old.population).items() if new[k] != v}
    assert changed == {
        "terminal_weight": 1.0, "alive_reward": 0.0, "bootstrap_timeouts": False, "double_dqn": False,
        "stage_epsilon": 0.0, "position_encoding": "scaled",
    }  # fmt: skip


def test_file_values_override_defaults(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        "[training]\nagents = 3\n[environment]\nmax_steps = 50\n"
        '[curriculum]\nstages = [{multiplier = 2, active_meters = ["hygiene"]}]\n'
    )
    config = load_config(path)
    assert (config.training.agents, config.environment.max_steps) == (3, 50)
    assert config.curriculum.stages[0].multiplier == 2.0
    assert config.curriculum.stages[0].active_meters == ("hygiene",)
    assert config.training.episodes == TownletConfig().training.episodes


def test_flags_override_file_and_none_means_keep():
    config = with_overrides(TownletConfig(), "training", agents=2, seed=None)
    assert config.training.agents == 2
    assert config.training.seed == TownletConfig().training.seed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[training]\nagnets = 3\n", r"unknown key 'agnets'; known keys: episodes, agents"),
        ("[trainer]\n", r"unknown key 'trainer'"),
        ("[training]\nagents = 'many'\n", r"training: agents must be an integer"),
        ("[training]\nagents = 0\n", r"training.agents must be >= 1"),
        ("[population]\ngamma = 1.5\n", r"population.gamma must be within \[0, 1\]"),
        ("[training]\ndevice = 'tpu'\n", r"training.device must be one of auto, cpu, cuda"),
        ("[curriculum]\nstages = [{multiplier = 1.0, active_meters = ['mana']}]\n", r"unknown meter"),
        ("[curriculum]\nstages = [{multiplier = 1.0, active_meters = ['money']}]\n", r"vital meter"),
        ("[curriculum]\nstages = [{multiplier = 1.0}]\n", r"active_meters"),
        ("[training\n", r"not valid TOML"),
    ],
)
def test_bad_config_is_a_one_line_error_naming_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert "\n" not in str(info.value)


def test_missing_config_file_names_the_flag(tmp_path):
    with pytest.raises(ConfigError, match=r"does not exist: pass an existing TOML file to --config"):
        load_config(tmp_path / "nope.toml")


def test_bad_flag_value_is_refused():
    with pytest.raises(ConfigError, match=r"training\.episodes"):
        with_overrides(TownletConfig(), "training", episodes=0)
