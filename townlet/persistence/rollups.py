"""The one SQL that rolls an episode's agent rows up into its ``episode_rollups`` row, and the check of it.

The database computes every rollup itself, from the agent rows it holds, with the statement built here: the
write path runs it in the episode's own transaction right after the agent rows (so a rollup can never
disagree with its episode), ``db copy`` runs it for each copied run, ``db check --repair`` reruns it, and
``db check`` compares what is stored with what it computes now. Answers read from the rollups therefore equal
the answers a scan of the agent rows gives: the same engine sums the same rows in the same order.

Revision 0004's backfill keeps a frozen copy of this statement (a migration must not change when this code
does); a test checks that the two still build the same rows.
"""

import math
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from townlet.persistence.models import EPISODE_ROLLUPS, ROLLUP_AGGREGATES, ROLLUP_DEATHS, ROLLUP_FIELDS

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


#: The write path's statement: the rollup of one just-written episode, ``:episode_pk``.
INSERT_EPISODE = rollup_insert("e.id = :episode_pk")
#: Every episode of run ``:run`` (``db copy``, ``db check --repair``).
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
