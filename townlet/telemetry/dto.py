"""Versioned per-agent snapshot DTOs and their field rules.

``CURRENT_DTO`` is the one place that knows which schema version this code writes; ``DTO_BY_VERSION``
lists every version it can still read. Each DTO's ``RULES`` say what a valid value of each field is, and the
same rules check one instance (``__post_init__``) or whole columns at once (``validate_columns``).
"""

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import astuple, dataclass, field, fields
from itertools import repeat
from operator import countOf
from typing import Any, ClassVar

from townlet.environment.world import ACTIONS, VITAL_METERS
from townlet.population.snapshots import ColumnFacts


class SnapshotValidationError(ValueError):
    """A DTO field holds a primitive of the right type but outside its range or choices."""


class TelemetryLeakError(TypeError):
    """A value that is not a finite JSON primitive (a tensor, a numpy scalar, NaN, Infinity) reached the boundary."""


def type_name(value: object) -> str:
    """``float``, ``torch.Tensor``, ``numpy.float64``: the qualified name of a value's type."""
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


@dataclass(frozen=True, slots=True)
class FieldRule:
    """What one DTO field accepts: an exact primitive type, and a closed range or a set of choices."""

    kind: type
    low: float = -math.inf
    high: float = math.inf
    choices: frozenset[str] | None = None

    def check_column(self, name: str, column: Sequence[Any], facts: ColumnFacts | None = None) -> None:
        """Check every value of one field; name the first bad one as ``agents[i].name``.

        ``facts`` that prove every value good (``admits``) are enough. Otherwise whole-column passes in C
        (exact type count, a sum for finiteness, min/max for the range); only a column that fails one is walked
        value by value, to name the first bad value.
        """
        if facts is not None and self.admits(facts):
            return
        if type(column) is range and self.kind is int:  # ints by construction: its ends are its extremes
            if column and (min(column[0], column[-1]) < self.low or max(column[0], column[-1]) > self.high):
                self._find(name, column, lambda v: not self.low <= v <= self.high)
            return
        if countOf(map(type, column), self.kind) != len(column):
            self._find(name, column, lambda v: type(v) is not self.kind)
        if not column:
            return
        if self.choices is not None:
            if not set(column) <= self.choices:
                self._find(name, column, lambda v: v not in self.choices)
            return
        if self.kind is float and not math.isfinite(sum(column)):  # NaN or inf; or a finite sum too large
            self._find(name, column, lambda v: not math.isfinite(v))
        if (self.low != -math.inf and min(column) < self.low) or (self.high != math.inf and max(column) > self.high):
            self._find(name, column, lambda v: not self.low <= v <= self.high)

    def admits(self, facts: ColumnFacts) -> bool:
        """Whether a column's facts alone prove every value passes: exact type, finite, within range (a NaN
        makes both ends NaN, which no comparison admits)."""
        if facts.kind is not self.kind or self.choices is not None:
            return False
        if self.kind is float and not (math.isfinite(facts.low) and math.isfinite(facts.high)):
            return False
        return self.low <= facts.low and facts.high <= self.high

    def _find(self, name: str, column: Sequence[Any], bad: Any) -> None:
        for i, value in enumerate(column):
            if bad(value):
                self.check_value(f"agents[{i}].{name}", value)

    def check_value(self, path: str, value: Any) -> None:
        if type(value) is not self.kind:
            raise TelemetryLeakError(f"{path}: {type_name(value)} (expected {self.kind.__name__})")
        if self.choices is not None:
            if value not in self.choices:
                raise SnapshotValidationError(f"{path}: {value!r} is not one of {sorted(self.choices)}")
            return
        if self.kind is float and not math.isfinite(value):
            raise TelemetryLeakError(f"{path}: non-finite float {value}")
        if not self.low <= value <= self.high:
            raise SnapshotValidationError(f"{path}: {value} is outside [{self.low}, {self.high}]")


DEATH_CAUSES: frozenset[str] = frozenset((*VITAL_METERS, "timeout"))
_METER = FieldRule(float, 0.0, 1.0)


@dataclass(frozen=True, slots=True)
class AgentTelemetrySnapshotV1:
    """One agent's state at the end of one episode (schema version 1): Python scalars only.

    Field order is the column order everywhere (tables, CSV, the dashboard); ``to_dict()`` keys are sorted, the
    order ``encode`` writes them. docs/telemetry_schema.md gives units and ranges.
    """

    SCHEMA_VERSION: ClassVar[int] = 1
    RULES: ClassVar[dict[str, FieldRule]] = {
        "agent_idx": FieldRule(int, 0),
        "episode": FieldRule(int, 1),
        "survival_steps": FieldRule(int, 0),
        "baseline_survival_steps": FieldRule(float, 0.0),
        "episode_reward": FieldRule(float),
        "epsilon": FieldRule(float, 0.0, 1.0),
        "curriculum_stage": FieldRule(int, 1),
        "death_cause": FieldRule(str, choices=DEATH_CAUSES),
        "meter_energy": _METER,
        "meter_hygiene": _METER,
        "meter_satiation": _METER,
        "meter_money": _METER,
    }

    agent_idx: int
    episode: int
    survival_steps: int
    baseline_survival_steps: float
    episode_reward: float
    epsilon: float
    curriculum_stage: int
    death_cause: str
    meter_energy: float
    meter_hygiene: float
    meter_satiation: float
    meter_money: float

    #: ``row(*fields)`` -> the payload dict, keys sorted; ``rows(*columns)`` -> one per agent
    #: (both generated per class by ``_row_builders``).
    row: ClassVar[Callable[..., dict[str, Any]]]
    rows: ClassVar[Callable[..., list[dict[str, Any]]]]

    def __post_init__(self) -> None:
        for name, rule in self.RULES.items():
            value = getattr(self, name)
            rule.check_value(name, value)
            if value == 0.0 and type(value) is float:
                object.__setattr__(self, name, 0.0)  # no negative zero: SQLite cannot keep its sign

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict, keys sorted (the order ``encode`` writes, so it need not sort them)."""
        return self.row(*astuple(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AgentTelemetrySnapshotV1":
        """Rebuild (and re-validate) a DTO from ``to_dict()`` output; unknown or missing keys are refused."""
        cls._require_keys(data)
        return cls(**data)

    @classmethod
    def _require_keys(cls, data: Mapping[str, Any], where: str = "") -> None:
        expected = set(FIELD_NAMES[cls])
        if data.keys() != expected:
            missing, extra = sorted(expected - set(data)), sorted(set(data) - expected)
            version = cls.SCHEMA_VERSION
            raise SnapshotValidationError(f"{where}V{version} keys differ: missing {missing}, unknown {extra}")

    @classmethod
    def check_columns(
        cls,
        columns: Mapping[str, Sequence[Any]],
        constants: Mapping[str, Any] | None = None,
        facts: Mapping[str, ColumnFacts] | None = None,
    ) -> "AgentColumns":
        """Validate whole columns with the same rules as one instance: the fast path of the payload builder.

        ``constants`` are fields with one value for every agent (the episode number): checked once. ``facts``
        (by field) come from the registry's tensors; a column whose facts prove it good is not walked. The
        result hands the same values on as dicts (the envelope) or tuples (the store) without a second check.
        """
        names = FIELD_NAMES[cls]
        constants = constants or {}
        if set(columns) | set(constants) != set(names) or set(columns) & set(constants):
            given = sorted([*columns, *constants])
            raise SnapshotValidationError(f"V{cls.SCHEMA_VERSION} columns differ from {names}: got {given}")
        for name, value in constants.items():
            cls.RULES[name].check_value(f"agents[*].{name}", value)
        facts = facts or {}
        for name, column in columns.items():
            cls.RULES[name].check_column(name, column, facts.get(name))
        lengths = {len(column) for column in columns.values()}
        if len(lengths) > 1:
            raise SnapshotValidationError(f"V{cls.SCHEMA_VERSION} columns have different lengths {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        checked = {f: columns[f] if f in columns else [constants[f]] * n for f in names}
        return AgentColumns(cls, checked, n, {name: facts[name] for name in columns if name in facts})

    @classmethod
    def check_dicts(cls, dicts: Sequence[Mapping[str, Any]]) -> "AgentColumns":
        """Agent dicts of this version (``to_dict()`` output, a decoded envelope's agents) -> checked columns."""
        for i, data in enumerate(dicts):
            cls._require_keys(data, f"agents[{i}]: ")
        return cls.check_columns({name: [data[name] for data in dicts] for name in FIELD_NAMES[cls]})


_VISITS = FieldRule(int, 0)
#: Entropy of a distribution over the actions is at most ln(number of actions); float32 rounding allowed.
MAX_ACTION_ENTROPY = math.log(len(ACTIONS)) + 1e-5


@dataclass(frozen=True, slots=True)
class AgentTelemetrySnapshotV2(AgentTelemetrySnapshotV1):
    """Schema version 2: every V1 field, then this episode's affordance visits and action entropy.

    ``visits_<affordance>`` counts successful interactions with that affordance; ``action_entropy`` is the
    entropy in nats of the agent's empirical action frequencies over the episode (docs/telemetry_schema.md).
    """

    SCHEMA_VERSION: ClassVar[int] = 2
    RULES: ClassVar[dict[str, FieldRule]] = {
        **AgentTelemetrySnapshotV1.RULES,
        "visits_bed": _VISITS,
        "visits_shower": _VISITS,
        "visits_fridge": _VISITS,
        "visits_job": _VISITS,
        "action_entropy": FieldRule(float, 0.0, MAX_ACTION_ENTROPY),
    }

    visits_bed: int
    visits_shower: int
    visits_fridge: int
    visits_job: int
    action_entropy: float


AgentTelemetrySnapshot = AgentTelemetrySnapshotV1  # every version's DTO is one (V2 extends V1)

#: Every DTO class this code can read, by schema version.
DTO_BY_VERSION: dict[int, type[AgentTelemetrySnapshot]] = {1: AgentTelemetrySnapshotV1, 2: AgentTelemetrySnapshotV2}

#: The DTO this code writes. Its ``SCHEMA_VERSION`` is the version announced everywhere.
CURRENT_DTO: type[AgentTelemetrySnapshot] = AgentTelemetrySnapshotV2
SCHEMA_VERSION: int = CURRENT_DTO.SCHEMA_VERSION

FIELD_NAMES: dict[type, tuple[str, ...]] = {cls: tuple(f.name for f in fields(cls)) for cls in DTO_BY_VERSION.values()}

#: Every field any schema version has, in version then declaration order (a record of an older version
#: simply lacks the newer ones).
ALL_FIELDS: tuple[str, ...] = tuple(dict.fromkeys(f for names in FIELD_NAMES.values() for f in names))


def _row_builders(names: tuple[str, ...]) -> tuple[Callable[..., dict[str, Any]], Callable[..., list[dict[str, Any]]]]:
    """``row(*fields)``: one dict literal, keys sorted; ``rows(*columns)``: a comprehension of the same literal.

    Both take the fields positionally in declaration order. Generated from the dataclass fields (as
    ``dataclasses`` generates ``__init__``) so each version's keys are written in one place; a dict literal is
    twice as fast as ``dict(zip(names, values))``, the comprehension saves a function call per agent, and sorted
    keys let ``encode`` skip its sort pass over every agent.
    """
    args, literal = ", ".join(names), "{" + ", ".join(f"{n!r}: {n}" for n in sorted(names)) + "}"
    source = (
        f"def row({args}):\n    return {literal}\ndef rows({args}):\n    return [{literal} for {args} in zip({args})]\n"
    )
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # names are this module's own field identifiers
    return namespace["row"], namespace["rows"]


for _cls in DTO_BY_VERSION.values():
    _row, _rows = _row_builders(FIELD_NAMES[_cls])
    _cls.row, _cls.rows = staticmethod(_row), staticmethod(_rows)

#: The affordance visit counters of the current schema, ``visits_<affordance>`` in the world's order.
VISIT_FIELDS: tuple[str, ...] = tuple(f for f in FIELD_NAMES[CURRENT_DTO] if f.startswith("visits_"))


@dataclass(frozen=True, slots=True)
class AgentColumns:
    """One episode's agent records as columns already checked by one DTO's rules: what the choke point hands on.

    ``rows()`` gives the envelope's dicts (keys sorted), ``tuples(names)`` the store's rows in its column
    order; neither checks again. ``columns`` holds every field of ``dto``, one list per field; ``facts`` the
    registry's facts of the columns it measured (none for columns made any other way).
    """

    dto: type[AgentTelemetrySnapshotV1]
    columns: Mapping[str, Sequence[Any]]
    num_agents: int
    facts: Mapping[str, ColumnFacts] = field(default_factory=dict)

    @property
    def schema_version(self) -> int:
        return self.dto.SCHEMA_VERSION

    def rows(self) -> list[dict[str, Any]]:
        """One dict per agent, keys sorted (the same dicts ``to_dict()`` gives)."""
        return self.dto.rows(*(self.columns[name] for name in FIELD_NAMES[self.dto]))

    def tuples(self, names: Sequence[str]) -> Iterator[tuple[Any, ...]]:
        """One tuple per agent of ``names``' values; a field this version lacks is ``None`` (a NULL column)."""
        return zip(*(self.columns[name] if name in self.columns else repeat(None) for name in names), strict=False)
