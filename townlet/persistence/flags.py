"""What a run's ``baseline_flags`` rows hold (revision 0005): the baseline audit's flags at the default
thresholds, maintained as episodes are written, so the dashboard's flags are a read of a small table.

Computed two ways that agree, as for the rollups (``rollups.py``):

- ``flags_select`` is the definition: SQL window functions over a run's stored agent rows (each agent's
  rows in episode order: the previous row's stage and baseline, runs of rows under ``below`` x baseline, the
  jury's consensus per episode). Revision 0005 backfilled with a frozen copy of it, ``db check`` compares
  what is stored with what it gives now, and ``--repair`` reruns it.
- ``FlagTracker`` is the write path's equivalent: each agent's previous stage and baseline and its running
  streak, kept in memory by the store, the episode's flags inserted in the episode's own transaction. It is
  rebuilt from the run's last stored episodes when a store first writes a run, and after a resume.

A property test proves both equal to the scan of ``townlet.audit.baselines`` (``audit baselines``), which
stays the answer for other thresholds and for what a flag cannot say (trajectories, sparklines).
"""

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import add, lt, mul
from typing import Any, NamedTuple

from townlet.audit.baselines import (
    FLAGS,
    JURY,
    Flag,
    Thresholds,
    below_detail,
    consensus,
    disagrees_detail,
    without_stage_change_detail,
)

#: The thresholds the table is maintained for: the CLI's and the dashboard's defaults.
DEFAULT = Thresholds()
#: ``kind`` is the flag's index in ``FLAGS`` (the order a scan raises them within one episode).
KIND = {name: i for i, name in enumerate(FLAGS)}
#: Column order of ``baseline_flags`` (the episode key first).
FLAG_COLUMNS = ("episode_pk", "agent_idx", "kind", "stage", "baseline", "other", "since")


class FlagRow(NamedTuple):
    """One stored flag: ``other`` is the previous baseline (``baseline-without-stage-change``) or the jury's
    (``baseline-disagrees``); ``since`` the streak's first episode (``survival-below-baseline``)."""

    episode_pk: int
    agent_idx: int
    kind: int
    stage: int
    baseline: float
    other: float | None
    since: int | None

    def flag(self, episode: int, thresholds: Thresholds = DEFAULT) -> Flag:
        """The ``Flag`` a scan raises for this row, detail text and all."""
        name = FLAGS[self.kind]
        if self.kind == KIND["baseline-without-stage-change"]:
            return Flag(name, episode, without_stage_change_detail(self.other, self.baseline, self.stage))
        if self.kind == KIND["baseline-disagrees"]:
            return Flag(name, episode, disagrees_detail(self.baseline, self.other))
        return Flag(name, episode, below_detail(thresholds, self.since))


#: Typed NULLs, so that every branch of the UNION agrees on its column types (PostgreSQL asks).
_NO_INT, _NO_FLOAT = "CAST(NULL AS INTEGER)", "CAST(NULL AS DOUBLE PRECISION)"


def _juror(agent: int, what: str) -> str:
    return f"max(CASE WHEN agent = {agent} THEN {what} END)"


def flags_select(where: str, thresholds: Thresholds = DEFAULT) -> str:
    """``SELECT`` of the flag rows (``FLAG_COLUMNS``) of the agent rows of the episodes ``where`` picks (over
    ``episodes e``; it must pick whole runs: an agent's previous row is the one before it in its run)."""
    j0, j1, j2 = JURY
    same_01 = f"s{j0} = s{j1} AND b{j0} = b{j1}"
    same_02 = f"s{j0} = s{j2} AND b{j0} = b{j2}"
    same_12 = f"s{j1} = s{j2} AND b{j1} = b{j2}"

    def reference(what: str) -> str:  # ``consensus``: the pair two jurors hold, else the first present juror's
        first, second = f"{what}{j0}", f"{what}{j1}"
        return (
            f"CASE WHEN jurors < 2 THEN NULL WHEN s{j0} IS NULL THEN {second}\n"
            f"    WHEN jurors = 3 AND NOT ({same_01}) AND NOT ({same_02}) AND {same_12} THEN {second}\n"
            f"    ELSE {first} END"
        )

    jurors = ",\n         ".join(f"{_juror(j, 'stage')} AS s{j}, {_juror(j, 'baseline')} AS b{j}" for j in JURY)
    streak = int(thresholds.streak)
    return f"""
WITH agent_rows AS (
  SELECT e.id AS episode_pk, e.run_id AS run, e.episode AS episode, a.agent_idx AS agent,
         a.curriculum_stage AS stage, a.baseline_survival_steps AS baseline,
         CASE WHEN a.survival_steps < {float(thresholds.below)!r} * a.baseline_survival_steps THEN 1 ELSE 0 END AS low
  FROM episodes e JOIN agent_snapshots a ON a.episode_pk = e.id WHERE {where}
),
jury AS (
  SELECT episode_pk,
         {jurors},
         count(CASE WHEN agent IN ({j0}, {j1}, {j2}) THEN 1 END) AS jurors
  FROM agent_rows GROUP BY episode_pk
),
reference AS (
  SELECT episode_pk,
    {reference("s")} AS stage,
    {reference("b")} AS baseline
  FROM jury
),
ordered AS (
  SELECT r.*, lag(stage) OVER w AS prev_stage, lag(baseline) OVER w AS prev_baseline,
         lag(episode, {streak - 1}) OVER w AS since, sum(1 - low) OVER w AS island
  FROM agent_rows r WINDOW w AS (PARTITION BY run, agent ORDER BY episode)
),
streaks AS (SELECT o.*, sum(low) OVER (PARTITION BY run, agent, island ORDER BY episode) AS streak FROM ordered o)
SELECT episode_pk, agent, {KIND["baseline-without-stage-change"]}, stage, baseline, prev_baseline, {_NO_INT}
FROM streaks WHERE prev_stage = stage AND prev_baseline <> baseline
UNION ALL
SELECT s.episode_pk, s.agent, {KIND["baseline-disagrees"]}, s.stage, s.baseline, f.baseline, {_NO_INT}
FROM streaks s JOIN reference f ON f.episode_pk = s.episode_pk WHERE f.stage = s.stage AND f.baseline <> s.baseline
UNION ALL
SELECT episode_pk, agent, {KIND["survival-below-baseline"]}, stage, baseline, {_NO_FLOAT}, since
FROM streaks WHERE low = 1 AND streak = {streak}
"""


def flags_insert(where: str) -> str:
    return f"INSERT INTO baseline_flags ({', '.join(FLAG_COLUMNS)}) {flags_select(where)}"


#: Every flag of run ``:run`` (``db check --repair``), and their deletion first.
INSERT_RUN = flags_insert("e.run_id = :run")
DELETE_RUN = "DELETE FROM baseline_flags WHERE episode_pk IN (SELECT id FROM episodes WHERE run_id = :run)"


def insert_values(placeholder: str) -> str:
    """The write path's insert of ``FlagRow``s in the driver's own positional ``placeholder``."""
    marks = ", ".join([placeholder] * len(FLAG_COLUMNS))
    return f"INSERT INTO baseline_flags ({', '.join(FLAG_COLUMNS)}) VALUES ({marks})"


@dataclass
class _Agent:
    """One agent's state between its rows: the last row's stage and baseline, the running streak of rows
    under the threshold (past the threshold it raises nothing more, so a restore may cap it there) and the
    episode it began."""

    stage: int
    baseline: float
    streak: int
    since: int | None


@dataclass
class _Columns:
    """Every agent's ``_Agent`` as columns, for a run whose episodes hold agents ``0..n-1`` (the trainer's):
    ``stages[i]`` is ``None`` for an agent with no earlier row."""

    stages: tuple[Any, ...]
    baselines: tuple[Any, ...]
    streaks: list[int]
    since: list[int | None]


@dataclass
class FlagTracker:
    """One run's flag state on the write path: every agent's previous stage and baseline and its running streak,
    advanced one episode at a time.

    ``flags(...)`` gives an episode's ``FlagRow``s and ``advance()`` keeps the state they came from once the
    episode is committed (a rolled-back episode leaves the state as it was). An episode of agents ``0..n-1``
    is folded column-wise (whole-column comparisons and ``map`` in C; a Python loop only over what changed);
    any other goes agent by agent. ``complete``: every agent with an earlier row in the run is known (else the
    store looks up one it has not seen, ``unknown``).
    """

    thresholds: Thresholds = DEFAULT
    agents: dict[int, _Agent] = field(default_factory=dict)
    complete: bool = False
    _columns: _Columns | None = None
    _pending: dict[int, _Agent] | _Columns | None = None

    def unknown(self, idx: Sequence[int]) -> list[int]:
        """The agents of ``idx`` this tracker has no state for."""
        if self._columns is not None:
            n = len(self._columns.stages)
            return list(range(n, len(idx))) if _aligned(idx) else sorted(set(idx) - set(range(n)))
        return sorted(set(idx) - self.agents.keys())

    def flags(
        self, episode_pk: int, episode: int, idx: Sequence[int], stages: Sequence[int], baselines: Sequence[float],
        survival: Sequence[int], bounds: tuple[int, float] | None = None,
    ) -> list[FlagRow]:  # fmt: skip
        """The flags of one episode's agent rows (columns in the same order), as a scan raises them. ``bounds``:
        the fewest survival steps and the largest baseline, when known (the registry's facts)."""
        if _aligned(idx):
            return self._aligned_flags(episode_pk, episode, tuple(stages), tuple(baselines), survival, bounds)
        self._to_agents()
        return self._agent_flags(episode_pk, episode, idx, stages, baselines, survival)

    def advance(self) -> None:
        """The episode whose flags were last computed is committed: keep its state."""
        if isinstance(self._pending, _Columns):
            self._columns = self._pending
        elif self._pending is not None:
            self.agents.update(self._pending)
        self._pending = None

    def restore(self, history: Iterable[tuple[int, int, int, float, int]]) -> set[int]:
        """Set agents' state from their stored rows ``(agent, episode, stage, baseline, survival)``, each
        agent's newest first. Returns the agents whose streak is still open at the oldest row given (every
        row given was under the threshold): with older rows, it may have begun earlier."""
        self._to_agents()
        newest: dict[int, _Agent] = {}
        closed: set[int] = set()
        for agent, episode, stage, baseline, steps in history:
            state = newest.get(agent)
            if state is None:
                state = newest[agent] = _Agent(stage, baseline, 0, None)
            elif agent in closed:
                continue
            if steps < self.thresholds.below * baseline:
                state.streak, state.since = state.streak + 1, episode
                if state.streak >= self.thresholds.streak:
                    state.streak = self.thresholds.streak
                    closed.add(agent)
            else:
                closed.add(agent)
        self.agents.update(newest)
        return set(newest) - closed

    # -- agent by agent -----------------------------------------------------------------------------

    def _to_agents(self) -> None:
        """Leave the column-wise state for the per-agent one (an episode of other agents, or a restore)."""
        columns, self._columns = self._columns, None
        if columns is None:
            return
        for agent, (stage, baseline, streak, since) in enumerate(
            zip(columns.stages, columns.baselines, columns.streaks, columns.since, strict=True)
        ):
            if stage is not None:
                self.agents[agent] = _Agent(stage, baseline, streak, since)

    def _agent_flags(
        self, episode_pk: int, episode: int, idx: Sequence[int], stages: Sequence[int], baselines: Sequence[float],
        survival: Sequence[int],
    ) -> list[FlagRow]:  # fmt: skip
        rows: list[FlagRow] = []
        jurors = sorted((agent, i) for i, agent in enumerate(idx) if agent in JURY)
        reference = consensus([(stages[i], baselines[i]) for _, i in jurors])
        below, streak = self.thresholds.below, self.thresholds.streak
        pending: dict[int, _Agent] = {}
        for agent, stage, baseline, steps in zip(idx, stages, baselines, survival, strict=True):
            before = self.agents.get(agent)
            if before is not None and stage == before.stage and baseline != before.baseline:
                kind = KIND["baseline-without-stage-change"]
                rows.append(FlagRow(episode_pk, agent, kind, stage, baseline, before.baseline, None))
            if reference is not None and reference[0] == stage and reference[1] != baseline:
                rows.append(FlagRow(episode_pk, agent, KIND["baseline-disagrees"], stage, baseline, reference[1], None))
            if steps < below * baseline:
                running = 1 if before is None else before.streak + 1
                since = episode if running == 1 or before is None else before.since
                if running == streak:
                    kind = KIND["survival-below-baseline"]
                    rows.append(FlagRow(episode_pk, agent, kind, stage, baseline, None, since))
                pending[agent] = _Agent(stage, baseline, min(running, streak), since)
            else:
                pending[agent] = _Agent(stage, baseline, 0, None)
        self._pending = pending
        return sorted(rows, key=lambda r: (r.agent_idx, r.kind))

    # -- column-wise --------------------------------------------------------------------------------

    def _before(self, n: int) -> _Columns:
        """The state of agents ``0..n-1`` as columns (from the per-agent state the first time)."""
        if self._columns is not None and len(self._columns.stages) == n:
            return self._columns
        self._to_agents()
        known = [self.agents.get(agent) for agent in range(n)]
        return _Columns(
            tuple(None if a is None else a.stage for a in known),
            tuple(None if a is None else a.baseline for a in known),
            [0 if a is None else a.streak for a in known],
            [None if a is None else a.since for a in known],
        )

    def _aligned_flags(
        self, episode_pk: int, episode: int, stages: tuple[int, ...], baselines: tuple[float, ...],
        survival: Sequence[int], bounds: tuple[int, float] | None,
    ) -> list[FlagRow]:  # fmt: skip
        n = len(stages)
        before = self._before(n)
        rows: list[FlagRow] = []
        if stages != before.stages or baselines != before.baselines:  # else no baseline moved (the usual case)
            kind = KIND["baseline-without-stage-change"]
            for i, (stage, old_stage, baseline, old) in enumerate(
                zip(stages, before.stages, baselines, before.baselines, strict=True)
            ):
                if stage == old_stage and baseline != old:
                    rows.append(FlagRow(episode_pk, i, kind, stage, baseline, old, None))
        reference = consensus([(stages[j], baselines[j]) for j in JURY if j < n])
        if reference is not None and not (stages.count(reference[0]) == n and baselines.count(reference[1]) == n):
            kind = KIND["baseline-disagrees"]
            for i, (stage, baseline) in enumerate(zip(stages, baselines, strict=True)):
                if stage == reference[0] and baseline != reference[1]:
                    rows.append(FlagRow(episode_pk, i, kind, stage, baseline, reference[1], None))
        cap, below = self.thresholds.streak, self.thresholds.below
        fewest, most = bounds if bounds is not None else (min(survival, default=0), max(baselines, default=0.0))
        lows = None if fewest >= below * most else list(map(lt, survival, map(mul, baselines, repeat(below))))
        if lows is None or True not in lows:  # nobody under the threshold (the usual case): every streak ends
            streaks, since = [0] * n, before.since
        else:  # streaks are not capped here: one reaches ``cap`` once, as in a scan
            streaks = list(map(mul, map(add, before.streaks, repeat(1)), lows))  # old + 1 where low, else 0
            since = before.since
            if 1 in streaks:  # streaks that begin here
                since = [episode if r == 1 else s for r, s in zip(streaks, since, strict=True)]
            if cap in streaks:
                kind = KIND["survival-below-baseline"]
                for i, r in enumerate(streaks):
                    if r == cap:
                        rows.append(FlagRow(episode_pk, i, kind, stages[i], baselines[i], None, since[i]))
        self._pending = _Columns(stages, baselines, streaks, since)
        return sorted(rows, key=lambda r: (r.agent_idx, r.kind))


def _aligned(idx: Sequence[int]) -> bool:
    """Whether an episode's agents are ``0..n-1`` in order (a trainer's: ``range(n)``)."""
    if isinstance(idx, range):
        return idx.start == 0 and idx.step == 1
    return list(idx) == list(range(len(idx)))


class FlagDifference(NamedTuple):
    """One flag stored that a run's agent rows do not raise, or raised and not stored."""

    run: int
    episode: int
    agent: int
    kind: int
    stored: bool

    def describe(self) -> str:
        where = f"run {self.run} episode {self.episode} agent {self.agent}"
        if self.stored:
            return f"{where}: {FLAGS[self.kind]} is stored, its agent rows raise no such flag"
        return f"{where}: its agent rows raise {FLAGS[self.kind]}, none is stored"


def differences(
    run: int, episodes: dict[int, int], stored: Sequence[Sequence[Any]], computed: Sequence[Sequence[Any]]
) -> Iterator[FlagDifference]:
    """What differs between a run's stored flag rows and the ones its agent rows raise now, in episode order
    (``episodes`` maps an episode key to its number)."""
    have, want = {tuple(r) for r in stored}, {tuple(r) for r in computed}
    found = [FlagDifference(run, episodes[r[0]], r[1], r[2], True) for r in have - want]
    found += [FlagDifference(run, episodes[r[0]], r[1], r[2], False) for r in want - have]
    yield from sorted(found)
