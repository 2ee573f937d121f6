"""Which runs a question is about: filters by tag, name and stored config, and groups of runs that share a config.

Shared by ``runs`` (listing), ``compare`` and the dashboard, so a selection means the same everywhere.

A run's stored config (``runs.config``, every TOML table) is flattened to dotted keys (``training.agents``);
``--where KEY=VALUE`` compares one of them with VALUE read as a TOML value (``64``, ``0.001``, ``true``,
``"cpu"``; a bare word is a string). ``LEARNING_NEUTRAL`` lists, in one place, the keys that never change what
is learned: runs equal in every other key (and in the device type they ran on) form one config group.
"""

import difflib
import fnmatch
import json
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from townlet.errors import TelemetryError

#: Stored config keys that do not change what a run learns, so runs differing only there are replicates:
#: the seed (what replicates vary), the episode budget (compared at common episodes anyway), threads and the
#: write queue (speed only), checkpoint cadence (what is kept, not what is learned: resume is exact), every
#: recording setting (recording draws no random numbers), and the device spelling (``auto`` and ``cpu`` are
#: the same machine: the device type a run really used, ``runs.device``, is part of the group instead, since
#: CPU and CUDA results are not bit-identical).
LEARNING_NEUTRAL: tuple[str, ...] = (
    "training.seed",
    "training.episodes",
    "training.threads",
    "training.write_queue",
    "training.checkpoint_every",
    "training.checkpoints_kept",
    "training.device",
    "recording.*",
)


class BadSelection(TelemetryError):
    """A filter or group that cannot select runs: an unknown key or tag, a malformed ``--where``."""


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"training": {"agents": 8}}`` -> ``{"training.agents": 8}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def is_neutral(key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in LEARNING_NEUTRAL)


@dataclass(frozen=True, slots=True)
class Where:
    """One ``--where KEY=VALUE`` test on a run's stored config."""

    key: str
    value: Any

    @classmethod
    def parse(cls, text: str) -> "Where":
        key, sep, raw = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadSelection(f"--where takes KEY=VALUE (e.g. --where training.agents=64), got {text!r}")
        return cls(key, _value(raw.strip()))

    def holds(self, flat: Mapping[str, Any]) -> bool:
        return same_value(flat.get(self.key, _MISSING), self.value)

    def __str__(self) -> str:
        return f"{self.key}={json.dumps(self.value)}"


_MISSING = object()


def _value(raw: str) -> Any:
    """VALUE as TOML reads it after ``v = ``; a bare word (``cpu``) is the string it spells."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def same_value(stored: Any, wanted: Any) -> bool:
    """Equal as config values: ``64`` equals ``64.0``, but ``true`` never equals ``1``."""
    if isinstance(stored, bool) or isinstance(wanted, bool):
        return type(stored) is type(wanted) and stored == wanted
    if isinstance(stored, int | float) and isinstance(wanted, int | float):
        return float(stored) == float(wanted)
    return stored == wanted


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Tags (a run carrying any of them), a name pattern, and config tests (all must hold); empty selects
    every run."""

    tags: tuple[str, ...] = ()
    name_like: str | None = None
    where: tuple[Where, ...] = ()

    @classmethod
    def parse(cls, tags: Sequence[str] = (), name_like: str | None = None, where: Sequence[str] = ()) -> "RunFilter":
        return cls(tuple(tags), name_like, tuple(Where.parse(w) for w in where))

    def check(self, known_tags: Iterable[str], configs: Mapping[int, Mapping[str, Any]]) -> None:
        """Refuse a tag no run carries and a key no run's config has, naming what exists."""
        have = set(known_tags)
        for tag in self.tags:
            if tag not in have:
                shown = ", ".join(sorted(have)[:20]) or "none yet"
                raise BadSelection(f"no run is tagged {tag!r} (tags: {shown}): tag runs with `runs tag RUN TAG`")
        keys = {key for config in configs.values() for key in flatten(config)}
        for test in self.where:
            if test.key not in keys:
                close = difflib.get_close_matches(test.key, sorted(keys), n=1)
                hint = f"did you mean {close[0]}?" if close else "keys look like training.agents"
                raise BadSelection(f"no run's config has the key {test.key!r}: {hint} (see `runs --json`)")

    def selects(self, name: str | None, tags: Iterable[str], config: Mapping[str, Any]) -> bool:
        if self.tags and not set(self.tags) & set(tags):
            return False
        if self.name_like is not None and not _name_matches(self.name_like, name):
            return False
        flat = flatten(config) if self.where else {}
        return all(test.holds(flat) for test in self.where)

    def __bool__(self) -> bool:
        return bool(self.tags or self.name_like is not None or self.where)


def _name_matches(pattern: str, name: str | None) -> bool:
    """Case-insensitive glob (``lr*``); a pattern without ``*``, ``?`` or ``[`` matches anywhere in the name."""
    if name is None:
        return False
    if not any(c in pattern for c in "*?["):
        return pattern.casefold() in name.casefold()
    return fnmatch.fnmatchcase(name.casefold(), pattern.casefold())


def learning_key(config: Mapping[str, Any], device: str) -> str:
    """What runs of one config group share: every stored key that can change learning, and the device type."""
    flat = {key: value for key, value in flatten(config).items() if not is_neutral(key)}
    flat["device type"] = device.split(":")[0]
    return json.dumps(flat, sort_keys=True)


def config_diff(configs: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[Any]]]:
    """The keys whose values differ between ``configs`` (one per group), each with every group's value
    (``None`` where a group's config lacks the key), in key order; identical keys are left out."""
    flats = [flatten(config) for config in configs]
    keys = sorted({key for flat in flats for key in flat})
    diff = []
    for key in keys:
        values = [flat.get(key) for flat in flats]
        if any(not same_value(v, values[0]) for v in values[1:]):
            diff.append((key, values))
    return diff
