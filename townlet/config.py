"""Training configuration: frozen dataclasses read from TOML with the standard library.

``load_config(path)`` reads a file over the defaults; ``with_overrides()`` applies CLI flags. Any unknown
key or bad value raises ``ConfigError`` with a one-line message naming the key and the fix.
"""

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from townlet import defaults
from townlet.environment.world import METERS, VITAL_METERS
from townlet.errors import ConfigError

#: Values accepted for ``population.position_encoding``.
POSITION_ENCODINGS = ("one_hot", "scaled")
#: Values accepted for ``training.device`` / ``--device`` (``cuda:N`` too).
DEVICE_CHOICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainingConfig:
    """How long to train, with how many agents, on which device, from which seed."""

    episodes: int = defaults.EPISODES
    agents: int = defaults.AGENTS
    seed: int = defaults.SEED
    device: str = defaults.DEVICE
    threads: int = defaults.THREADS  # torch intra-op threads; 0 = torch's default (all cores)
    write_queue: int = defaults.WRITE_QUEUE  # finished episodes held for the writer before training waits
    checkpoint_every: int = defaults.CHECKPOINT_EVERY  # learner checkpoint every N episodes; 0 = only at the end
    checkpoints_kept: int = defaults.CHECKPOINTS_KEPT  # the newest N checkpoints of a run stay in the database


@dataclass(frozen=True)
class EnvironmentConfig:
    """Grid size and episode length of the world."""

    grid_size: int = 8
    max_steps: int = 200


@dataclass(frozen=True)
class PopulationConfig:
    """The DQN's hyper-parameters."""

    hidden_size: int = 64
    learning_rate: float = 0.001
    gamma: float = 0.98
    batch_size: int = 64
    replay_capacity: int = 50_000
    learning_starts: int = 500
    target_sync_steps: int = 250
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_decay: float = 0.9
    reward_scale: float = 0.01
    shaping_weight: float = 1.0
    # The learner of townlet 0.12 (issue 22); configs/learner_0_11.toml keeps the settings before it.
    terminal_weight: float = 0.0  # the learner's share of the telemetry reward (survival - baseline, at the end)
    alive_reward: float = 1.0  # learner reward per step an agent is still alive after, in steps like the above
    bootstrap_timeouts: bool = True  # a timeout is not a terminal state for the learner (it cannot see time)
    double_dqn: bool = True  # the online net picks the next action, the target net values it
    stage_epsilon: float = 0.5  # at a stage change epsilon rises back to at least this (0 = never)
    position_encoding: str = "one_hot"  # one_hot: the row and the column one-hot; scaled: two numbers in [0, 1]


@dataclass(frozen=True)
class StageConfig:
    """One curriculum stage: a depletion multiplier and the meters that deplete at it."""

    multiplier: float
    active_meters: tuple[str, ...]


DEFAULT_STAGES: tuple[StageConfig, ...] = (
    StageConfig(1.0, ("energy",)),
    StageConfig(1.0, ("energy", "hygiene")),
    StageConfig(1.25, ("energy", "hygiene", "satiation")),
    StageConfig(1.5, ("energy", "hygiene", "satiation")),
    StageConfig(2.0, ("energy", "hygiene", "satiation")),
)


@dataclass(frozen=True)
class CurriculumConfig:
    """Stages (easiest first) and the rule for advancing: mean survival over a window of episodes."""

    stages: tuple[StageConfig, ...] = DEFAULT_STAGES
    window: int = 5
    advance_threshold: float = 0.8


@dataclass(frozen=True)
class RecordingConfig:
    """Which episodes and agents have every step recorded (``townlet.training.recorder``)."""

    enabled: bool = True
    every: int = 10  # episodes divisible by N; 0 = none by number
    stage_starts: bool = True  # the first episode at each curriculum stage (episode 1 included)
    session_last: bool = True  # the last planned episode of each train session
    episodes: tuple[int, ...] = ()  # these episode numbers too (train --record-episodes adds to them)
    agents: tuple[int, ...] = ()  # these agents; empty = every agent, or max_agents of them spread evenly
    max_agents: int = 64
    q_values: bool = False  # also the Q-values the policy saw (about 4x the bytes)
    live_fps: float = 10.0  # frames a second of the live grid (train --live, watched); 0 = none


@dataclass(frozen=True)
class TownletConfig:
    """The whole configuration, one section per TOML table."""

    training: TrainingConfig = field(default_factory=TrainingConfig)
    environment: EnvironmentConfig = field(default_factory=EnvironmentConfig)
    population: PopulationConfig = field(default_factory=PopulationConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    recording: RecordingConfig = field(default_factory=RecordingConfig)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view (tuples become lists), e.g. to store with a run."""
        return json_safe(dataclasses.asdict(self))


def json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def load_config(path: Path | str | None = None) -> TownletConfig:
    """The defaults, overlaid with the TOML file at ``path`` when given."""
    if path is None:
        return validate(TownletConfig())
    return validate(_build(TownletConfig, _read_toml(Path(path)), where=str(path)))


def keys_set_by(path: Path | str) -> set[str]:
    """``section.key`` of every setting the TOML file at ``path`` names (whatever its value)."""
    raw = _read_toml(Path(path))
    return {f"{section}.{key}" for section, table in raw.items() if isinstance(table, dict) for key in table}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist: pass an existing TOML file to --config") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory: pass a TOML file to --config") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}): save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path} ({exc.strerror}): check its permissions") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML ({exc}): fix the syntax") from None


def config_from_mapping(raw: dict[str, Any], *, where: str) -> TownletConfig:
    """A config from an already-parsed mapping (e.g. the one stored with a run), validated like a file."""
    return validate(_build(TownletConfig, raw, where=where))


def with_overrides(config: TownletConfig, section: str, **values: Any) -> TownletConfig:
    """Replace the given (non-None) keys of one section, re-validating the result."""
    chosen = {k: v for k, v in values.items() if v is not None}
    if not chosen:
        return config
    updated = dataclasses.replace(getattr(config, section), **chosen)
    return validate(dataclasses.replace(config, **{section: updated}))


def _build(cls: type, raw: Any, *, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table, got {type(raw).__name__}")
    hints = get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in hints:
            raise ConfigError(f"{where}: unknown key {key!r}; known keys: {', '.join(known)}")
        kwargs[key] = _coerce(hints[key], value, where=f"{where}: {key}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(hint: Any, value: Any, *, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where=where)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    origin_args = getattr(hint, "__args__", ())
    if getattr(hint, "__origin__", None) is tuple and origin_args:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(_coerce(origin_args[0], item, where=f"{where}[{i}]") for i, item in enumerate(value))
    raise ConfigError(f"{where}: unsupported setting type {hint}")  # pragma: no cover - a bug in a dataclass


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _validate_recording(r: RecordingConfig, agents: int) -> None:
    _require(r.every >= 0, f"recording.every must be >= 0 (0 = no episode by number), got {r.every}")
    _require(r.max_agents >= 1, f"recording.max_agents must be >= 1, got {r.max_agents}")
    _require(
        math.isfinite(r.live_fps) and 0 <= r.live_fps <= 60,
        f"recording.live_fps must be within [0, 60] (0 = no live grid), got {r.live_fps}",
    )
    bad = [e for e in r.episodes if e < 1]
    _require(not bad, f"recording.episodes must be episode numbers >= 1, got {bad[0] if bad else ''}")
    outside = [a for a in r.agents if not 0 <= a < agents]
    _require(
        not outside,
        f"recording.agents: agent {outside[0] if outside else ''} does not exist (training.agents = {agents}: "
        f"0-{agents - 1})",
    )
    _require(len(set(r.agents)) == len(r.agents), "recording.agents lists an agent twice")


def validate(config: TownletConfig) -> TownletConfig:
    """Check every value's range; return the config unchanged when valid."""
    t, e, p, c = config.training, config.environment, config.population, config.curriculum
    _validate_recording(config.recording, t.agents)
    _require(t.episodes >= 1, f"training.episodes must be >= 1, got {t.episodes}")
    _require(t.agents >= 1, f"training.agents must be >= 1, got {t.agents}")
    _require(t.seed >= 0, f"training.seed must be >= 0, got {t.seed}")
    _require(t.threads >= 0, f"training.threads must be >= 0 (0 = torch's default, all cores), got {t.threads}")
    _require(t.write_queue >= 1, f"training.write_queue must be >= 1, got {t.write_queue}")
    _require(
        t.checkpoint_every >= 0,
        f"training.checkpoint_every must be >= 0 (0 = only when a session ends), got {t.checkpoint_every}",
    )
    _require(t.checkpoints_kept >= 1, f"training.checkpoints_kept must be >= 1, got {t.checkpoints_kept}")
    _require(
        t.device in DEVICE_CHOICES or t.device.startswith("cuda:"),
        f"training.device must be one of {', '.join(DEVICE_CHOICES)}, got {t.device!r}",
    )
    _require(e.grid_size >= 6, f"environment.grid_size must be >= 6 to hold the affordances, got {e.grid_size}")
    _require(e.max_steps >= 1, f"environment.max_steps must be >= 1, got {e.max_steps}")
    for name in ("hidden_size", "batch_size", "replay_capacity", "target_sync_steps"):
        _require(getattr(p, name) >= 1, f"population.{name} must be >= 1, got {getattr(p, name)}")
    _require(p.learning_starts >= 0, f"population.learning_starts must be >= 0, got {p.learning_starts}")
    for name in ("learning_rate", "reward_scale"):
        value = getattr(p, name)
        _require(math.isfinite(value) and value > 0, f"population.{name} must be > 0, got {value}")
    _require(
        math.isfinite(p.shaping_weight) and p.shaping_weight >= 0,
        f"population.shaping_weight must be >= 0, got {p.shaping_weight}",
    )
    _require(
        p.position_encoding in POSITION_ENCODINGS,
        f"population.position_encoding must be one of {', '.join(POSITION_ENCODINGS)}, got {p.position_encoding!r}",
    )
    for name in ("terminal_weight", "alive_reward"):
        value = getattr(p, name)
        _require(math.isfinite(value) and value >= 0, f"population.{name} must be >= 0, got {value}")
    for name in ("gamma", "epsilon_start", "epsilon_end", "epsilon_decay", "stage_epsilon"):
        value = getattr(p, name)
        _require(0.0 <= value <= 1.0, f"population.{name} must be within [0, 1], got {value}")
    _require(p.epsilon_end <= p.epsilon_start, "population.epsilon_end must not exceed population.epsilon_start")
    _require(len(c.stages) >= 1, "curriculum.stages must list at least one stage")
    _require(c.window >= 1, f"curriculum.window must be >= 1, got {c.window}")
    _require(
        0.0 < c.advance_threshold <= 1.0, f"curriculum.advance_threshold must be in (0, 1], got {c.advance_threshold}"
    )
    for i, stage in enumerate(c.stages, start=1):
        _require(
            math.isfinite(stage.multiplier) and stage.multiplier > 0,
            f"curriculum stage {i}: multiplier must be > 0, got {stage.multiplier}",
        )
        unknown = [m for m in stage.active_meters if m not in METERS]
        _require(not unknown, f"curriculum stage {i}: unknown meter(s) {unknown}; meters are {', '.join(METERS)}")
        _require(
            any(m in VITAL_METERS for m in stage.active_meters),
            f"curriculum stage {i}: activate at least one vital meter ({', '.join(VITAL_METERS)})",
        )
    return config
