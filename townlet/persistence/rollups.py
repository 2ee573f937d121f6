"""What an episode's ``episode_rollups`` row holds, computed two ways that agree, and the check of it.

``rollup_select`` is the definition: the SQL that aggregates an episode's stored agent rows. ``db check
--repair`` reruns it, revision 0004 backfilled with a frozen copy of it, and ``db check`` compares what is
stored with what it gives now (``db copy`` carries the rollups with their unchanged rows).

``rollup_values`` is the write path's fast equivalent: the same aggregates folded from the columns the
store is about to insert (already checked by the DTO), inserted in the episode's own transaction right after
its agent rows, so a rollup can never disagree with its episode. It adds in agent order, as the database
reads the rows (``sum()`` adds floats one by one on Python 3.11, like SQLite's ``sum()``), so on SQLite a
mean from a rollup is bit for bit the mean a scan gives. The trainer's columns come with those aggregates
already measured by the registry on its tensors (``ColumnFacts``: one float64 matrix, ``cumsum`` in agent
order), so its episodes skip the fold. Aggregating in SQL inside the transaction cost as much as inserting
the rows (``benchmarks/bench_store.py``: 0.47x a bare insert); the fold costs about 1 ms per 1,024 agents
beside a 3.3 ms insert (0.59-0.66x); the facts about 0.1 ms.

Revision 0004's backfill keeps a frozen copy of this statement (a migration must not change when this code
does); a test checks that the two still build the same rows.
"""

import math
from collections.abc import Iterator, Sequence
from operator import mul
from typing import Any, NamedTuple

from townlet.persistence.models import EPISODE_ROLLUPS, ROLLUP_AGGREGATES, ROLLUP_DEATHS, ROLLUP_FIELDS
from townlet.telemetry.dto import AgentColumns

#: Column order of ``episode_rollups`` (the episode key first).
ROLLUP_COLUMNS: tuple[str, ...] = tuple(c.name for c in EPISODE_ROLLUPS.c)

#: Sums add doubles, as ``avg()`` does (a mean from a rollup is then the mean a scan gives, bit for bit; an
#: integer field's sum of squares never overflows). A square below 1e-300 counts as 0: PostgreSQL refuses a
#: product that underflows, and such a square changes no standard deviation.
_EXPRESSIONS = {
    "sum": "sum(CAST(a.{f} AS DOUBLE PRECISION))",
    "min": "min(a.{f})",
    "max": "max(a.{f})",
    "sumsq": "sum(CASE WHEN abs(a.{f}) < 1e-150 THEN 0.0 ELSE CAST(a.{f} AS DOUBLE PRECISION) * a.{f} END)",
}


def _aggregates() -> list[str]:
    """``count(a.agent_idx)``, ``sum(a.survival_steps)``, ...: one expression per rollup column after the key."""
    values = ["count(a.agent_idx)"]
    values += [_EXPRESSIONS[agg].format(f=field) for field in ROLLUP_FIELDS for agg in ROLLUP_AGGREGATES]
    values += [f"count(CASE WHEN a.death_cause = '{cause}' THEN 1 END)" for cause in ROLLUP_DEATHS]
    return values


#: A square below this counts as 0 (see ``_EXPRESSIONS``): the guard applies to values under 1e-150.
TINY = 1e-150


def _sum_of_squares(values: Sequence[Any]) -> float:
    squares = list(map(mul, values, values))
    if min(filter(None, squares), default=1.0) < 1e-299:  # a tiny nonzero value: apply the SQL's guard exactly
        squares = [0.0 if abs(v) < TINY else float(v) * v for v in values]
    return sum(squares, 0.0)  # ints are added as doubles, as CAST(... AS DOUBLE PRECISION) adds them


def rollup_values(agents: AgentColumns) -> list[Any]:
    """The rollup row (after the episode key) of one episode's checked columns: what ``rollup_select`` gives
    for the same rows once stored, in ``ROLLUP_COLUMNS`` order.

    A column the registry measured comes with its sums, min and max (``ColumnFacts``, added in agent order
    like the database adds): taken as they are. Any other column is folded here.
    """
    row: list[Any] = [agents.num_agents]
    for field in ROLLUP_FIELDS:
        values = agents.columns.get(field)
        facts = agents.facts.get(field)
        if values is None or not agents.num_agents:  # a field this schema version lacks; an episode of no agents
            row += [None] * len(ROLLUP_AGGREGATES)
        elif facts is not None and facts.total is not None:
            # A registry value is a float32 or a small integer: no nonzero square falls under the SQL's guard.
            row += [facts.total, facts.low, facts.high, facts.total_of_squares]
        else:
            row += [sum(values, 0.0), min(values), max(values), _sum_of_squares(values)]
    causes = agents.columns["death_cause"]
    row += [causes.count(cause) for cause in ROLLUP_DEATHS]
    return row


def insert_values(placeholder: str) -> str:
    """The write path's insert of one ``rollup_values`` row, the episode key first, in the driver's own
    positional ``placeholder`` (``?`` for sqlite3, ``%s`` for psycopg)."""
    marks = ", ".join([placeholder] * len(ROLLUP_COLUMNS))
    return f"INSERT INTO {EPISODE_ROLLUPS.name} ({', '.join(ROLLUP_COLUMNS)}) VALUES ({marks})"


def rollup_select(where: str) -> str:
    """``SELECT`` of the rollup rows of the episodes ``where`` picks (over ``episodes e``), by episode key.

    An episode without agent rows still gets its row (``agents`` 0, the aggregates NULL, the deaths 0).
    """
    return (
        f"SELECT e.id, {', '.join(_aggregates())} FROM episodes e "
        f"LEFT JOIN agent_snapshots a ON a.episode_pk = e.id WHERE {where} GROUP BY e.id"
    )


def rollup_insert(where: str) -> str:
    return f"INSERT INTO {EPISODE_ROLLUPS.name} ({', '.join(ROLLUP_COLUMNS)}) {rollup_select(where)}"


#: Every episode of run ``:run`` (``db check --repair``).
INSERT_RUN = rollup_insert("e.run_id = :run")
#: Rebuilding a run's rollups deletes them first.
DELETE_RUN = f"DELETE FROM {EPISODE_ROLLUPS.name} WHERE episode_pk IN (SELECT id FROM episodes WHERE run_id = :run)"

#: Rollup columns that hold sums: compared with a relative tolerance (a server may add the same rows in
#: another order, e.g. a parallel scan); every other column must be equal.
FLOAT_SUMS = frozenset(f"{field}_{agg}" for field in ROLLUP_FIELDS for agg in ("sum", "sumsq"))
TOLERANCE = 1e-9


class RollupDifference(NamedTuple):
    """One episode whose stored rollup is not what its agent rows give now (or that has none)."""

    run: int
    episode: int
    column: str
    stored: Any
    computed: Any

    def describe(self) -> str:
        if self.column == "":
            return f"run {self.run} episode {self.episode} has no rollup"
        where = f"run {self.run} episode {self.episode}"
        return f"{where}: {self.column} is {self.stored}, its agent rows give {self.computed}"


def same(column: str, stored: Any, computed: Any) -> bool:
    if column in FLOAT_SUMS and stored is not None and computed is not None:
        return math.isclose(stored, computed, rel_tol=TOLERANCE, abs_tol=TOLERANCE)
    return stored == computed


def differences(
    run: int, episodes: dict[int, int], stored: Sequence[Sequence[Any]], computed: Sequence[Sequence[Any]]
) -> Iterator[RollupDifference]:
    """Compare a run's stored rollup rows with the computed ones (both keyed by their first value, the episode
    key; ``episodes`` maps it to the episode number): the first differing column of each episode."""
    kept = {row[0]: row for row in stored}
    for row in sorted(computed, key=lambda r: episodes[r[0]]):
        mine = kept.get(row[0])
        if mine is None:
            yield RollupDifference(run, episodes[row[0]], "", None, None)
            continue
        for name, a, b in zip(ROLLUP_COLUMNS[1:], mine[1:], row[1:], strict=True):
            if not same(name, a, b):
                yield RollupDifference(run, episodes[row[0]], name, a, b)
                break
