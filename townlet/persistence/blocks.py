"""What a run's ``survival_blocks`` rows hold (revision 0005): survival summed per block of ``BLOCK_EPISODES``
consecutive episodes and per group of agents, so the run page's heat map reads a few rows per column.

A heat map cell is the mean survival of a bucket of agents over a bucket of episodes. The dashboard draws at
most ``GROUPS`` rows of agents, so the agents of a run are grouped once, ``agent * G // n`` for a run of ``n``
agents (``G = min(GROUPS, n)``: one group per agent in a small run), exactly as the heat map buckets them;
the episodes are grouped in blocks, ``(episode - 1) // BLOCK_EPISODES``. A block's row per group holds how
many agent rows it sums (``agents``) and their survival steps' sum: integers, so a mean from blocks is the
mean of the agent rows, bit for bit.

Computed two ways that agree, as for the rollups and flags:

- ``blocks_select`` is the definition: a ``GROUP BY`` over the run's agent rows of every complete block.
  Revision 0005 backfilled with a frozen copy of it; ``db check`` compares, ``--repair`` reruns it.
- ``BlockTracker`` is the write path's: the open block's sums kept in memory by the store, written in the
  transaction of the episode that completes the block (``episode % BLOCK_EPISODES == 0``); rebuilt from the
  open block's stored rows when a store first writes a run, and after a resume (which deletes the blocks
  from the first replaced episode's on).
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

#: Episodes per block.
BLOCK_EPISODES = 16
#: Agent groups per run (the most the dashboard's heat map draws).
GROUPS = 64
#: Column order of ``survival_blocks``.
BLOCK_COLUMNS = ("run_id", "block", "grp", "agents", "survival_sum")


def group_count(num_agents: int) -> int:
    """How many agent groups a run of ``num_agents`` agents has."""
    return max(1, min(GROUPS, num_agents))


def blocks_select(where: str) -> str:
    """``SELECT`` of the block rows (``BLOCK_COLUMNS``) of every complete block of the runs ``where`` picks
    (over ``runs r``): a block is complete once its last episode is stored."""
    return f"""
SELECT e.run_id, (e.episode - 1) / {BLOCK_EPISODES} AS block,
       (a.agent_idx * CASE WHEN r.num_agents < {GROUPS} THEN r.num_agents ELSE {GROUPS} END) / r.num_agents AS grp,
       count(*), sum(CAST(a.survival_steps AS DOUBLE PRECISION))
FROM runs r JOIN episodes e ON e.run_id = r.id JOIN agent_snapshots a ON a.episode_pk = e.id
WHERE {where} AND r.num_agents > 0 AND (e.episode - 1) / {BLOCK_EPISODES} < (
    SELECT max(x.episode) / {BLOCK_EPISODES} FROM episodes x WHERE x.run_id = r.id
)
GROUP BY e.run_id, (e.episode - 1) / {BLOCK_EPISODES},
         (a.agent_idx * CASE WHEN r.num_agents < {GROUPS} THEN r.num_agents ELSE {GROUPS} END) / r.num_agents
"""


#: Run ``:run``'s agent rows of episodes ``:first`` to ``:last`` summed like blocks, per agent group (``:groups``
#: groups of ``:agents`` agents) and block: the open block's sums (``BlockTracker.restore``) and the episodes a
#: heat map reads after the last complete block.
ROW_SUMS = f"""
SELECT (a.agent_idx * :groups) / :agents, (e.episode - 1) / {BLOCK_EPISODES}, count(*),
       sum(CAST(a.survival_steps AS DOUBLE PRECISION))
FROM episodes e JOIN agent_snapshots a ON a.episode_pk = e.id
WHERE e.run_id = :run AND e.episode BETWEEN :first AND :last
GROUP BY (a.agent_idx * :groups) / :agents, (e.episode - 1) / {BLOCK_EPISODES}
"""
#: Every block of run ``:run`` (``db check --repair``), and their deletion first.
INSERT_RUN = f"INSERT INTO survival_blocks ({', '.join(BLOCK_COLUMNS)}) {blocks_select('r.id = :run')}"
DELETE_RUN = "DELETE FROM survival_blocks WHERE run_id = :run"
#: A resume after episode ``:after`` replaces every block from the one holding episode ``:after + 1`` on.
DELETE_AFTER = f"DELETE FROM survival_blocks WHERE run_id = :run AND (block + 1) * {BLOCK_EPISODES} > :after"


def insert_values(placeholder: str) -> str:
    """The write path's insert of block rows in the driver's own positional ``placeholder``."""
    marks = ", ".join([placeholder] * len(BLOCK_COLUMNS))
    return f"INSERT INTO survival_blocks ({', '.join(BLOCK_COLUMNS)}) VALUES ({marks})"


@dataclass
class BlockTracker:
    """One run's open block on the write path: per agent group, the agent rows summed so far and their
    survival sum. ``add(...)`` folds an episode in (and gives the block's rows when it completes the block);
    ``advance()`` keeps the result once the episode is committed."""

    run: int
    num_agents: int
    block: int | None = None
    sums: dict[int, list[int]] = field(default_factory=dict)
    _pending: tuple[int | None, dict[int, list[int]]] | None = None

    def add(self, episode: int, idx: Sequence[int], survival: Sequence[int]) -> list[tuple[Any, ...]]:
        if self.num_agents <= 0:
            return []
        block = (episode - 1) // BLOCK_EPISODES
        sums = {} if block != self.block else {g: list(v) for g, v in self.sums.items()}
        groups, n = group_count(self.num_agents), self.num_agents
        if isinstance(idx, range) and idx == range(n):  # a trainer's episode: each group a slice, summed in C
            for g in range(groups):
                lo, hi = (g * n + groups - 1) // groups, ((g + 1) * n + groups - 1) // groups
                counted = sums.setdefault(g, [0, 0])
                counted[0] += hi - lo
                counted[1] += sum(survival[lo:hi])
        else:
            for agent, steps in zip(idx, survival, strict=True):
                counted = sums.setdefault(agent * groups // n, [0, 0])
                counted[0] += 1
                counted[1] += steps
        if episode % BLOCK_EPISODES == 0:  # the block's last episode: write it, open the next
            self._pending = (None, {})
            return [(self.run, block, g, c[0], float(c[1])) for g, c in sorted(sums.items())]
        self._pending = (block, sums)
        return []

    def advance(self) -> None:
        if self._pending is not None:
            self.block, self.sums = self._pending
            self._pending = None

    def restore(self, block: int, rows: Iterator[tuple[int, int, int, float]]) -> None:
        """The open block's sums from its stored rows, as ``ROW_SUMS`` gives them."""
        self.block, self.sums = block, {g: [int(c), int(s)] for g, _, c, s in rows}


class BlockDifference(NamedTuple):
    """One block row stored that a run's agent rows do not give, or given and not stored."""

    run: int
    block: int
    group: int
    stored: bool

    def describe(self) -> str:
        episodes = f"episodes {self.block * BLOCK_EPISODES + 1}-{(self.block + 1) * BLOCK_EPISODES}"
        what = "is stored as its agent rows do not give it" if self.stored else "is missing or differs"
        return f"run {self.run} {episodes} agent group {self.group}: the survival block {what}"


def differences(
    run: int, stored: Sequence[Sequence[Any]], computed: Sequence[Sequence[Any]]
) -> Iterator[BlockDifference]:
    """What differs between a run's stored block rows and the ones its agent rows give now, by block."""
    have, want = {tuple(r) for r in stored}, {tuple(r) for r in computed}
    found = {(r[1], r[2], True) for r in have - want} | {(r[1], r[2], False) for r in want - have}
    for block, group, stored_only in sorted(found):
        if stored_only and (block, group, False) in found:
            continue  # one line for a row that differs
        yield BlockDifference(run, block, group, stored_only)
