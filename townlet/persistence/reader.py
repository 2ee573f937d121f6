"""``TelemetryReader``: the read-only queries behind ``runs``, ``episodes``, ``replay``, ``audit`` and ``export``.

A file path is read through the standard library's ``sqlite3`` (opened ``mode=ro``: never created, never
changed), so a cold ``townlet-telemetry replay`` imports neither SQLAlchemy nor Alembic nor torch. A URL
(PostgreSQL, or a ``sqlite://`` URL) is read through a SQLAlchemy connection in a read-only transaction.
Both run the same SQL text below (named ``:parameters``, portable between SQLite and PostgreSQL), and both
check the database's revision first with the same rules as the write path.
"""

import json
import math
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from itertools import groupby
from operator import itemgetter
from typing import Any, NamedTuple, Protocol

from townlet.audit.baselines import Flag
from townlet.persistence import recordings as recording_sql
from townlet.persistence.blocks import BLOCK_EPISODES, ROW_SUMS, group_count
from townlet.persistence.errors import (
    AgentNotFound,
    DatabaseTooNew,
    DatabaseUnavailable,
    EpisodeNotFound,
    InvalidStoredRow,
    NoRuns,
    NotATownletDatabase,
    NotRecorded,
    RunNotFound,
)
from townlet.persistence.flags import FLAG_COLUMNS, FlagRow
from townlet.persistence.location import connect_sqlite, is_url, sqlite_path
from townlet.persistence.revisions import VERSION_TABLE, require_head, revision_from_tables
from townlet.persistence.run_liveness import run_is_trained, sqlite_lock_held
from townlet.telemetry.dto import (
    ALL_FIELDS,
    DTO_BY_VERSION,
    FIELD_NAMES,
    AgentColumns,
    SnapshotValidationError,
    TelemetryLeakError,
)
from townlet.telemetry.recording import RECORDING_FORMAT, AgentRecording, RecordingHeader

#: Every column of ``agent_snapshots`` a query may name (the fields of every schema version, and its own).
AGENT_COLUMNS: frozenset[str] = frozenset({"schema_version", *ALL_FIELDS} - {"episode"})

#: Each field's rule (the newest DTO's, which holds every field): what a streamed column is checked against.
CURRENT_RULES = DTO_BY_VERSION[max(DTO_BY_VERSION)].RULES

#: LIMIT that means none, in both SQLite and PostgreSQL (a bigint).
NO_LIMIT = 2**62

#: Rows fetched per round trip when streaming (export, audits): memory stays constant.
BATCH_ROWS = 50_000


class _Rows(Protocol):
    """One read-only connection: SQL text with named parameters in, tuples out."""

    label: str

    def all(self, sql: str, params: dict[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]: ...

    def stream(self, sql: str, params: dict[str, Any], batch: int) -> tuple[list[str], Iterator[list[tuple[Any, ...]]]]:
        """Column names, and the rows in lists of at most ``batch``."""
        ...

    def table_names(self) -> set[str]: ...

    def run_is_trained(self, run: int) -> bool:
        """Whether a process holds the run's lock right now (``run_liveness``)."""
        ...

    def close(self) -> None: ...


class _SqliteRows:
    """A bare ``sqlite3`` connection on a file, in one read transaction (a consistent snapshot)."""

    def __init__(self, db: str) -> None:
        self.path = sqlite_path(db, read_only=True)
        self.label = str(self.path)
        self.connection = connect_sqlite(self.path, read_only=True)
        self._run(lambda: self.connection.execute("BEGIN"))

    def _run(self, call: Any) -> Any:
        try:
            return call()
        except sqlite3.DatabaseError as exc:
            message = str(exc).splitlines()[0]
            if "file is not a database" in message:
                raise NotATownletDatabase(
                    f"{self.label} is not a SQLite database ({message}): point --db at a townlet database"
                ) from None
            raise DatabaseUnavailable(f"cannot read {self.label} ({message}): check --db") from None

    def all(self, sql: str, params: dict[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        cursor = self._run(lambda: self.connection.execute(sql, params))
        return [d[0] for d in cursor.description], self._run(cursor.fetchall)

    def stream(self, sql: str, params: dict[str, Any], batch: int) -> tuple[list[str], Iterator[list[tuple[Any, ...]]]]:
        cursor = self._run(lambda: self.connection.execute(sql, params))

        def batches() -> Iterator[list[tuple[Any, ...]]]:
            while rows := self._run(lambda: cursor.fetchmany(batch)):
                yield rows

        return [d[0] for d in cursor.description], batches()

    def table_names(self) -> set[str]:
        _, rows = self.all("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'", {})
        return {name for (name,) in rows}

    def run_is_trained(self, run: int) -> bool:
        return sqlite_lock_held(self.path, run)

    def close(self) -> None:
        self.connection.close()


class _SqlAlchemyRows:
    """A SQLAlchemy connection (PostgreSQL, or a SQLite URL) in one read-only transaction."""

    def __init__(self, db: str) -> None:
        from sqlalchemy.exc import DBAPIError

        from townlet.persistence.engine import connection_hint, database_url, describe, make_engine

        self._hint = connection_hint

        self._errors = DBAPIError
        url = database_url(db)
        self.url = url
        self.label = describe(url)
        self.engine = make_engine(url, read_only=True)
        try:
            self.connection = self._run(self.engine.connect)
            self._run(self.connection.begin)
        except BaseException:
            self.engine.dispose()
            raise

    def _run(self, call: Any) -> Any:
        try:
            return call()
        except self._errors as exc:
            message = str(exc.orig or exc).strip().splitlines()[0]
            raise DatabaseUnavailable(f"cannot read {self.label} ({message}): {self._hint(message)}") from None

    def all(self, sql: str, params: dict[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
        from sqlalchemy import text

        result = self._run(lambda: self.connection.execute(text(sql), params))
        return list(result.keys()), [tuple(row) for row in result]

    def stream(self, sql: str, params: dict[str, Any], batch: int) -> tuple[list[str], Iterator[list[tuple[Any, ...]]]]:
        from sqlalchemy import text

        options = {"stream_results": True, "yield_per": batch}
        result = self._run(lambda: self.connection.execution_options(**options).execute(text(sql), params))

        def batches() -> Iterator[list[tuple[Any, ...]]]:
            partitions = iter(result.partitions(batch))
            while partition := self._run(lambda: next(partitions, None)):
                yield [tuple(row) for row in partition]

        return list(result.keys()), batches()

    def table_names(self) -> set[str]:
        from sqlalchemy import inspect

        return set(self._run(lambda: inspect(self.connection).get_table_names()))

    def run_is_trained(self, run: int) -> bool:
        return run_is_trained(run, self.url, lambda sql, params: self.all(sql, params)[1][0][0])

    def close(self) -> None:
        try:
            self.connection.close()
        finally:
            self.engine.dispose()


class RunSummary(NamedTuple):
    """One run as the ``runs`` command lists it."""

    id: int
    run_uuid: str
    started_at: str
    ended_at: str | None
    status: str
    num_agents: int
    episodes: int
    last_episode: int | None
    schema_version: int
    device: str
    seed: int
    name: str | None = None
    tags: tuple[str, ...] = ()


#: What every summary of agent rows carries (an episode's, or a bucket of episodes'), after its own fields.
_AGENT_AGGREGATES: list[tuple[str, type]] = [
    ("agents", int),
    ("survival_mean", float),
    ("survival_min", int),
    ("survival_max", int),
    ("reward_mean", float),
    ("reward_min", float),
    ("reward_max", float),
    ("baseline_mean", float),
    ("epsilon_mean", float),
]

EpisodeSummary = NamedTuple(
    "EpisodeSummary",
    [("episode", int), ("steps", int), ("curriculum_stage", int), ("duration_s", float), *_AGENT_AGGREGATES],
)
EpisodeSummary.__doc__ = "One episode of a run with its agents' survival and reward aggregated."

EpisodeBucket = NamedTuple(
    "EpisodeBucket",
    [("first_episode", int), ("episode", int), ("episodes", int), ("curriculum_stage", int), *_AGENT_AGGREGATES],
)
EpisodeBucket.__doc__ = (
    "Consecutive episodes of a run summarised together (a chart's point): episodes ``first_episode`` to "
    "``episode``, how many, the last stage, the agent rows, and their survival and reward (mean, min, max)."
)


class EpisodeAgents(NamedTuple):
    """One episode's agent payloads exactly as stored, at the schema version they were written under."""

    run: RunSummary
    episode: int
    schema_version: int
    agents: list[dict[str, Any]]


def timestamp(value: Any) -> str | None:
    """A stored timestamp as ISO 8601 in UTC (SQLite keeps the text SQLAlchemy wrote, naive UTC)."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.isoformat()


_RUNS_SQL = """
SELECT r.id, r.run_uuid, r.started_at, r.ended_at, r.status, r.num_agents,
       (SELECT count(*) FROM episodes e WHERE e.run_id = r.id) AS episodes,
       (SELECT max(e.episode) FROM episodes e WHERE e.run_id = r.id) AS last_episode,
       r.schema_version, r.device, r.seed, r.name
FROM runs r {where} ORDER BY r.id
"""

_TAGS_SQL = "SELECT run_id, tag FROM run_tags {where} ORDER BY run_id, tag"

#: One episode's means from its rollup: sums over the agent count, as ``avg()`` over its agent rows computes them.
_ROLLUP_MEANS = """r.agents,
       CAST(r.survival_steps_sum AS DOUBLE PRECISION) / r.agents, r.survival_steps_min, r.survival_steps_max,
       r.episode_reward_sum / r.agents, r.episode_reward_min, r.episode_reward_max,
       r.baseline_survival_steps_sum / r.agents, r.epsilon_sum / r.agents"""

#: Per episode, one rollup row (``episode_rollups``): the cost is the episodes shown, not the agent rows.
_EPISODES_SQL = f"""
SELECT e.episode, e.steps, e.curriculum_stage, e.duration_s, {_ROLLUP_MEANS}
FROM (SELECT id, episode, steps, curriculum_stage, duration_s FROM episodes
      WHERE run_id = :run ORDER BY episode {{direction}} LIMIT :limit OFFSET :offset) e
JOIN episode_rollups r ON r.episode_pk = e.id AND r.agents > 0
ORDER BY e.episode
"""

#: Consecutive episodes in at most ``:points`` buckets (integer buckets over the run's episode span), each
#: summarised from its episodes' rollups: means weighted by agent rows, the extremes of the extremes.
_BUCKETS_SQL = """
SELECT min(e.episode), max(e.episode), count(*), max(e.curriculum_stage), sum(r.agents),
       CAST(sum(r.survival_steps_sum) AS DOUBLE PRECISION) / sum(r.agents), min(r.survival_steps_min),
       max(r.survival_steps_max), sum(r.episode_reward_sum) / sum(r.agents), min(r.episode_reward_min),
       max(r.episode_reward_max), sum(r.baseline_survival_steps_sum) / sum(r.agents), sum(r.epsilon_sum) / sum(r.agents)
FROM episodes e JOIN episode_rollups r ON r.episode_pk = e.id AND r.agents > 0
WHERE e.run_id = :run
GROUP BY ((e.episode - :first) * :points) / :span
ORDER BY 1
"""

_EPISODE_AGENTS_SQL = """
SELECT a.* FROM agent_snapshots a
WHERE a.episode_pk = (SELECT id FROM episodes WHERE run_id = :run AND episode = :episode) {agent}
ORDER BY a.agent_idx
"""

_RUN_ROWS_SQL = """
SELECT e.episode, a.* FROM episodes e JOIN agent_snapshots a ON a.episode_pk = e.id
WHERE e.run_id = :run {filters}
ORDER BY e.episode, a.agent_idx
"""


_GRID_SQL = """
SELECT (a.agent_idx * :rows) / :agents AS r, ((e.episode - :first) * :columns) / :span AS c,
       avg(CAST(a.survival_steps AS DOUBLE PRECISION))
FROM episodes e JOIN agent_snapshots a ON a.episode_pk = e.id
WHERE e.run_id = :run
GROUP BY r, c
ORDER BY r, c
"""


#: A heat map over more agent rows than this reads the run's survival blocks instead of its agent rows.
RAW_GRID_ROWS = 250_000

_LAST_EPISODE_SQL = """
SELECT e.run_id, CAST(r.survival_steps_sum AS DOUBLE PRECISION) / r.agents, r.baseline_survival_steps_sum / r.agents
FROM episodes e JOIN episode_rollups r ON r.episode_pk = e.id AND r.agents > 0
WHERE e.id IN (SELECT (SELECT x.id FROM episodes x WHERE x.run_id = r.id ORDER BY x.episode DESC LIMIT 1) FROM runs r)
"""

_AGENT_MEANS_SQL = """
SELECT a.agent_idx, avg(CAST(a.survival_steps AS DOUBLE PRECISION)), avg(a.baseline_survival_steps),
       avg(a.episode_reward), count(*)
FROM (SELECT id FROM episodes WHERE run_id = :run ORDER BY episode DESC LIMIT :last) e
JOIN agent_snapshots a ON a.episode_pk = e.id
GROUP BY a.agent_idx
ORDER BY a.agent_idx
"""


#: compare's per-episode scores, from each episode's rollup (the agents' mean): survival steps, episode
#: reward, and survival above the baseline (steps; the legacy reward before scaling).
METRIC_SQL = {
    "survival": "CAST(r.survival_steps_sum AS DOUBLE PRECISION) / r.agents",
    "reward": "r.episode_reward_sum / r.agents",
    "survival-over-baseline": "(r.survival_steps_sum - r.baseline_survival_steps_sum) / r.agents",
}

#: Per run and episode (:lo to :hi): the metric, one division per rollup (exact on both backends: the means are
#: taken in Python, in episode order, so SQLite and PostgreSQL give the same bits).
_EPISODE_SCORES_SQL = """
SELECT e.run_id, e.episode, {metric}
FROM episodes e JOIN episode_rollups r ON r.episode_pk = e.id AND r.agents > 0
WHERE e.run_id IN ({runs}) AND e.episode BETWEEN :lo AND :hi
ORDER BY e.run_id, e.episode
"""

#: Per run, stage and agent over episodes :lo to :hi: the agent's mean survival above its baseline.
_AGENT_MARGINS_SQL = """
SELECT e.run_id, e.curriculum_stage, a.agent_idx, avg(a.survival_steps - a.baseline_survival_steps)
FROM episodes e JOIN agent_snapshots a ON a.episode_pk = e.id
WHERE e.run_id IN ({runs}) AND e.episode BETWEEN :lo AND :hi
GROUP BY e.run_id, e.curriculum_stage, a.agent_idx
"""

#: Per run and stage: how many agents raised the audit's survival-below-baseline flag (whole run).
_BELOW_SQL = """
SELECT e.run_id, f.stage, count(DISTINCT f.agent_idx)
FROM baseline_flags f JOIN episodes e ON e.id = f.episode_pk
WHERE f.kind = :kind AND e.run_id IN ({runs})
GROUP BY e.run_id, f.stage
"""


def _in_list(runs: Sequence[int]) -> tuple[str, dict[str, int]]:
    """``:r0, :r1, ...`` and their values: an IN list both drivers bind."""
    return ", ".join(f":r{i}" for i in range(len(runs))), {f"r{i}": run for i, run in enumerate(runs)}


class TelemetryReader:
    """Owns one read-only connection to one townlet database, checked to be at this code's schema.

    Every method reads; nothing here can create, migrate or write a database.
    """

    def __init__(self, db: str) -> None:
        self._rows: _Rows = _SqlAlchemyRows(db) if is_url(db) else _SqliteRows(db)
        self.label = self._rows.label
        self.db_flag = f"--db {self.label}"
        try:
            self._check_revision()
        except BaseException:
            self.close()
            raise

    def _check_revision(self) -> None:
        tables = self._rows.table_names()
        versions: list[str] = []
        if VERSION_TABLE in tables:
            versions = [v for (v,) in self._rows.all(f"SELECT version_num FROM {VERSION_TABLE}", {})[1]]
        require_head(revision_from_tables(tables, versions, self.label), self.label, db_flag=self.db_flag)

    def close(self) -> None:
        self._rows.close()

    def __enter__(self) -> "TelemetryReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs -----------------------------------------------------------------------------------

    def runs(self) -> list[RunSummary]:
        tags = self._tags("", {})
        return [self._run_summary(row, tags) for row in self._rows.all(_RUNS_SQL.format(where=""), {})[1]]

    def _tags(self, where: str, params: dict[str, Any]) -> dict[int, tuple[str, ...]]:
        _, rows = self._rows.all(_TAGS_SQL.format(where=where), params)
        return {run: tuple(tag for _, tag in group) for run, group in groupby(rows, key=itemgetter(0))}

    def tags(self) -> dict[str, int]:
        """Every tag in the database with how many runs carry it, by tag."""
        _, rows = self._rows.all("SELECT tag, count(*) FROM run_tags GROUP BY tag ORDER BY tag", {})
        return dict(rows)

    def run(self, run: int | None = None) -> RunSummary:
        """Run ``run``, or the latest run when ``None``; a clear error when there is none."""
        if run is None:
            _, rows = self._rows.all("SELECT max(id) FROM runs", {})
            if rows[0][0] is None:
                raise NoRuns(f"{self.label} holds no runs yet: train first (townlet-telemetry train {self.db_flag})")
            run = rows[0][0]
        _, rows = self._rows.all(_RUNS_SQL.format(where="WHERE r.id = :run"), {"run": run})
        if not rows:
            raise RunNotFound(f"no run {run} in {self.label}: list runs with `townlet-telemetry runs {self.db_flag}`")
        return self._run_summary(rows[0], self._tags("WHERE run_id = :run", {"run": run}))

    def _run_summary(self, row: Sequence[Any], tags: dict[int, tuple[str, ...]]) -> RunSummary:
        """A runs row as listed; a ``running`` run whose lock nobody holds is ``stale`` (its process died)."""
        summary = RunSummary(*row, tags=tags.get(row[0], ()))
        status, ended = summary.status, summary.ended_at
        if status == "running" and not self._rows.run_is_trained(summary.id):
            # Ended when its last episode did (as ``mark_stale_runs`` will store it), or at its start.
            status = "stale"
            last = self._rows.all("SELECT max(finished_at) FROM episodes WHERE run_id = :run", {"run": summary.id})
            ended = last[1][0][0] or summary.started_at
        return summary._replace(started_at=timestamp(summary.started_at), ended_at=timestamp(ended), status=status)

    # -- episodes -------------------------------------------------------------------------------

    def episodes(
        self, run: RunSummary, *, limit: int | None = None, offset: int = 0, last: int | None = None
    ) -> list[EpisodeSummary]:
        """Episodes in order; ``last`` picks the final N, else ``limit``/``offset`` page from the first."""
        direction, count = ("DESC", last) if last is not None else ("ASC", limit)
        params = {"run": run.id, "limit": NO_LIMIT if count is None else count, "offset": offset}
        _, rows = self._rows.all(_EPISODES_SQL.format(direction=direction), params)
        return [EpisodeSummary(*row) for row in rows]

    def episode_buckets(self, run: RunSummary, points: int) -> list[EpisodeBucket]:
        """The run's episodes in at most ``points`` buckets of consecutive episodes (one per episode when the run
        has no more than ``points``), from the rollups: the cost is the run's episodes, never its agent rows."""
        _, bounds = self._rows.all(
            "SELECT min(episode), max(episode) FROM episodes WHERE run_id = :run", {"run": run.id}
        )
        first, last = bounds[0]
        if first is None:
            return []
        span = last - first + 1
        if span <= points:
            return [EpisodeBucket(e.episode, e.episode, 1, e.curriculum_stage, *e[4:]) for e in self.episodes(run)]
        _, rows = self._rows.all(_BUCKETS_SQL, {"run": run.id, "first": first, "points": points, "span": span})
        return [EpisodeBucket(*row) for row in rows]

    def episodes_with_visits(self, run: RunSummary) -> int:
        """How many of the run's episodes hold visit counts (written under schema version 2 or later), from
        the rollups."""
        sql = (
            "SELECT count(*) FROM episodes e JOIN episode_rollups r ON r.episode_pk = e.id "
            "WHERE e.run_id = :run AND r.visits_bed_sum IS NOT NULL"
        )
        return self._rows.all(sql, {"run": run.id})[1][0][0]

    def episode_agents(self, run: RunSummary, episode: int, agent: int | None = None) -> EpisodeAgents:
        """One episode's agents (or one agent) rebuilt through the DTO of their own schema version."""
        params: dict[str, Any] = {"run": run.id, "episode": episode}
        filters = ""
        if agent is not None:
            filters, params["agent"] = "AND a.agent_idx = :agent", agent
        names, rows = self._rows.all(_EPISODE_AGENTS_SQL.format(agent=filters), params)
        if not rows:
            self._explain_missing(run, episode, agent)
        batches = list(self._payloads(names, rows, run, episode))
        if len(batches) != 1:
            raise NotATownletDatabase(
                f"episode {episode} of run {run.id} mixes schema versions: it was not written whole"
            )
        version, agents = batches[0]
        return EpisodeAgents(run, episode, version, agents)

    def _explain_missing(self, run: RunSummary, episode: int, agent: int | None) -> None:
        if not self._has_episode(run, episode):
            span = f"episodes 1 to {run.last_episode}" if run.last_episode else "no episodes yet"
            raise EpisodeNotFound(f"run {run.id} has no episode {episode} ({span}): pick another --episode")
        raise no_agent(run, agent)

    # -- recordings -----------------------------------------------------------------------------

    def recordings(self, run: RunSummary) -> list[recording_sql.RecordingSummary]:
        """The run's recorded episodes, oldest first (from the ``recordings`` rows: no blob is read)."""
        return [recording_sql.summary(row) for row in self._rows.all(recording_sql.LIST_SQL, {"run": run.id})[1]]

    def recording_header(self, run: RunSummary, episode: int) -> RecordingHeader:
        """The header of a recorded episode; ``NotRecorded`` listing the run's recorded episodes otherwise."""
        _, rows = self._rows.all(recording_sql.HEADER_SQL, {"run": run.id, "episode": episode})
        if not rows:
            self._explain_unrecorded(run, episode)
        if rows[0][1] > RECORDING_FORMAT:
            raise recording_sql.RecordingDamaged(
                f"run {run.id} episode {episode}: the recording is format {rows[0][1]}, newer than this townlet "
                f"reads (format {RECORDING_FORMAT}): upgrade townlet (pip install -U townlet-telemetry)"
            )
        try:
            return recording_sql.header(rows[0][0])
        except (KeyError, TypeError, ValueError):
            raise recording_sql.RecordingDamaged(
                f"run {run.id} episode {episode}: the recording header is damaged: run db check"
            ) from None

    def recorded_agent(self, run: RunSummary, episode: int, agent: int, head: RecordingHeader) -> AgentRecording:
        """One recorded agent's steps: one row read, one blob decoded (the others' stay untouched)."""
        _, rows = self._rows.all(recording_sql.AGENT_SQL, {"run": run.id, "episode": episode, "agent": agent})
        if not rows:
            raise agent_not_recorded(run, episode, agent, head)
        return recording_sql.decode(rows[0][0], agent, head, f"run {run.id} episode {episode} agent {agent}")

    def recorded_agents(self, run: RunSummary, episode: int, head: RecordingHeader) -> list[AgentRecording]:
        """Every recorded agent of one episode, in agent order."""
        _, rows = self._rows.all(recording_sql.AGENTS_SQL, {"run": run.id, "episode": episode})
        where = f"run {run.id} episode {episode} agent "
        return [recording_sql.decode(blob, agent, head, f"{where}{agent}") for agent, blob in rows]

    @staticmethod
    def followed_agent(run: RunSummary, episode: int, agent: int | None, head: RecordingHeader) -> int:
        """The agent a step view follows: ``agent``, or the first recorded one; refused when not recorded."""
        if agent is None:
            return head.agents[0]
        if agent not in head.agents:
            raise agent_not_recorded(run, episode, agent, head)
        return agent

    def _explain_unrecorded(self, run: RunSummary, episode: int) -> None:
        if not self._has_episode(run, episode):
            self._explain_missing(run, episode, None)
        listed = [r.episode for r in self.recordings(run)]
        shown = ", ".join(map(str, listed[:30])) + (" ..." if len(listed) > 30 else "") if listed else "none"
        raise NotRecorded(
            f"episode {episode} was not recorded; recorded episodes of run {run.id}: {shown} "
            f"(townlet-telemetry recordings --run {run.id})"
        )

    def _has_episode(self, run: RunSummary, episode: int) -> bool:
        _, found = self._rows.all(
            "SELECT count(*) FROM episodes WHERE run_id = :run AND episode = :episode",
            {"run": run.id, "episode": episode},
        )
        return bool(found[0][0])

    # -- streams for audits and export ----------------------------------------------------------

    def agent_payloads(
        self, run: RunSummary, *, episode: int | None = None, batch: int = BATCH_ROWS
    ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Every agent row of the run (or of one episode) in (episode, agent) order, in validated batches.

        Yields ``(schema_version, payloads)``; memory stays bounded by ``batch`` rows.
        """
        for columns in self.agent_column_batches(run, episode=episode, batch=batch):
            yield columns.schema_version, columns.rows()

    def agent_column_batches(
        self, run: RunSummary, *, episode: int | None = None, batch: int = BATCH_ROWS
    ) -> Iterator[AgentColumns]:
        """The same rows as checked columns, one ``AgentColumns`` per batch and schema version (``episode`` is a
        column here): what a columnar export writes without building a dict per row."""
        params: dict[str, Any] = {"run": run.id}
        filters = ""
        if episode is not None:
            filters, params["episode"] = "AND e.episode = :episode", episode
        names, batches = self._rows.stream(_RUN_ROWS_SQL.format(filters=filters), params, batch)
        for rows in batches:
            yield from self._checked_columns(names, rows, run)

    def _payloads(
        self, names: list[str], rows: list[tuple[Any, ...]], run: RunSummary, episode: int | None = None
    ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        for columns in self._checked_columns(names, rows, run, episode):
            yield columns.schema_version, columns.rows()

    def _checked_columns(
        self, names: list[str], rows: list[tuple[Any, ...]], run: RunSummary, episode: int | None = None
    ) -> Iterator[AgentColumns]:
        try:
            yield from columns_from_rows(names, rows, episode=episode)
        except (SnapshotValidationError, TelemetryLeakError) as exc:
            raise self._invalid_row(run, exc) from None

    def _invalid_row(self, run: RunSummary, exc: Exception) -> InvalidStoredRow:
        return InvalidStoredRow(
            f"run {run.id} in {self.label} holds a row townlet would never write ({exc}): "
            "it was changed outside townlet"
        )

    def agent_columns(
        self,
        run: RunSummary,
        columns: Sequence[str],
        agents: Sequence[int] | None = None,
        batch: int = BATCH_ROWS,
        episode: int | None = None,
    ) -> Iterator[list[tuple[Any, ...]]]:
        """``(episode, agent, *columns)`` rows of the run (or of some agents, or one episode), episode then agent
        order, in batches of at most ``batch``.

        ``columns`` are ``agent_snapshots`` columns (NULL where the row's schema version lacks them). With
        ``agents``, each episode costs one primary-key lookup per agent, whatever the run's size. Each batch's
        columns are checked with the DTO's rules for their fields (a value townlet would never write is
        refused, as when whole rows are read).
        """
        unknown = set(columns) - AGENT_COLUMNS
        if unknown:
            raise ValueError(f"not agent_snapshots columns: {sorted(unknown)}")
        params: dict[str, Any] = {"run": run.id}
        only = ""
        if agents is not None:
            for agent in agents:
                if not 0 <= agent < run.num_agents:
                    raise no_agent(run, agent)
            names = [f"agent{i}" for i in range(len(agents))]
            params.update(zip(names, agents, strict=True))
            only = f"AND a.agent_idx IN ({', '.join(':' + n for n in names)})"
        one = ""
        if episode is not None:
            one, params["episode"] = "AND e.episode = :episode", episode
        sql = f"""
        SELECT e.episode, a.agent_idx, {", ".join(f"a.{c}" for c in columns)}
        FROM episodes e JOIN agent_snapshots a ON a.episode_pk = e.id {only}
        WHERE e.run_id = :run {one} ORDER BY e.episode, a.agent_idx
        """
        return self._checked(run, columns, self._rows.stream(sql, params, batch)[1])

    def _checked(
        self, run: RunSummary, columns: Sequence[str], batches: Iterator[list[tuple[Any, ...]]]
    ) -> Iterator[list[tuple[Any, ...]]]:
        rules = [(i + 2, name, CURRENT_RULES[name]) for i, name in enumerate(columns) if name in CURRENT_RULES]
        for rows in batches:
            for i, name, rule in rules:
                values = [row[i] for row in rows]
                if rule.kind is not str and None in values:
                    values = [v for v in values if v is not None]  # a field this row's schema version lacks
                try:
                    rule.check_column(name, values)
                except (SnapshotValidationError, TelemetryLeakError) as exc:
                    raise self._invalid_row(run, exc) from None
            yield rows

    def baseline_flags(self, run: RunSummary) -> list[tuple[int, Flag]]:
        """The run's maintained baseline flags (``audit baselines`` at its default thresholds, revision 0005) as
        ``(agent, Flag)``, by agent then episode, as a scan raises them: a read of a small table."""
        columns = ", ".join(f"f.{name}" for name in FLAG_COLUMNS)
        _, rows = self._rows.all(
            f"SELECT e.episode, {columns} FROM baseline_flags f JOIN episodes e ON e.id = f.episode_pk "
            "WHERE e.run_id = :run ORDER BY f.agent_idx, e.episode, f.kind",
            {"run": run.id},
        )
        return [(row[2], FlagRow(*row[1:]).flag(row[0])) for row in rows]

    def survival_grid(self, run: RunSummary, *, columns: int, rows: int) -> dict[str, Any]:
        """Mean survival per (agent bucket, episode bucket): at most ``rows`` x ``columns`` cells, computed
        by the database in one pass (``GROUP BY`` integer buckets), so the answer stays small at any size."""
        _, bounds = self._rows.all(
            "SELECT min(episode), max(episode) FROM episodes WHERE run_id = :run", {"run": run.id}
        )
        first, last = bounds[0]
        if first is None:
            return {"first_episode": None, "last_episode": None, "rows": 0, "columns": 0, "cells": []}
        span = last - first + 1
        rows, columns = max(1, min(rows, run.num_agents)), max(1, min(columns, span))
        if first == 1 and rows == group_count(run.num_agents) and span * run.num_agents > RAW_GRID_ROWS:
            return self._block_grid(run, last, columns, rows)
        _, cells = self._rows.all(
            _GRID_SQL,
            {"run": run.id, "first": first, "rows": rows, "agents": run.num_agents, "columns": columns, "span": span},
        )
        return {"first_episode": first, "last_episode": last, "rows": rows, "columns": columns, "cells": cells}

    def _block_grid(self, run: RunSummary, last: int, columns: int, rows: int) -> dict[str, Any]:
        """The grid from the run's survival blocks (``blocks.py``): each column whole blocks of episodes, each
        row one agent group; the episodes after the last complete block from their agent rows."""
        blocks = math.ceil(last / BLOCK_EPISODES)
        per_column = math.ceil(blocks / columns)  # whole blocks per column
        _, stored = self._rows.all(
            "SELECT grp, block, agents, survival_sum FROM survival_blocks WHERE run_id = :run", {"run": run.id}
        )
        tail = (max((row[1] for row in stored), default=-1) + 1) * BLOCK_EPISODES + 1
        params = {"run": run.id, "first": tail, "last": last, "groups": rows, "agents": run.num_agents}
        _, newest = self._rows.all(ROW_SUMS, params)
        cells: dict[tuple[int, int], list[float]] = {}
        for group, block, agents, survival in [*stored, *newest]:
            cell = cells.setdefault((group, block // per_column), [0, 0.0])
            cell[0] += agents
            cell[1] += survival
        width = per_column * BLOCK_EPISODES
        return {
            "first_episode": 1,
            "last_episode": last,
            "rows": rows,
            "columns": math.ceil(last / width),
            "episodes_per_column": width,
            "cells": [(r, c, total / count) for (r, c), (count, total) in sorted(cells.items())],
        }

    # -- what the dashboard's overview pages read ------------------------------------------------------

    def run_config(self, run: RunSummary) -> dict[str, Any]:
        """The configuration the run was trained with, as stored (every TOML table, every key)."""
        _, rows = self._rows.all("SELECT config FROM runs WHERE id = :run", {"run": run.id})
        return _stored_config(rows[0][0])

    def run_configs(self) -> dict[int, dict[str, Any]]:
        """Every run's stored configuration, by run id, in one query."""
        _, rows = self._rows.all("SELECT id, config FROM runs", {})
        return {run: _stored_config(stored) for run, stored in rows}

    def last_episode_means(self) -> dict[int, tuple[float, float]]:
        """Per run: its last episode's mean survival and mean baseline (one grouped query for every run)."""
        _, rows = self._rows.all(_LAST_EPISODE_SQL, {})
        return {run: (survival, baseline) for run, survival, baseline in rows}

    def episode_times(self, run: RunSummary) -> list[tuple[int, str | None, str | None]]:
        """Every episode's number, start and finish (ISO 8601 UTC), in order: where sessions begin."""
        _, rows = self._rows.all(
            "SELECT episode, started_at, finished_at FROM episodes WHERE run_id = :run ORDER BY episode",
            {"run": run.id},
        )
        return [(episode, timestamp(start), timestamp(end)) for episode, start, end in rows]

    # -- what compare reads: per-episode rollups, and agent rows of the window only ----------------------------

    def episode_scores(self, runs: Sequence[int], metric: str, lo: int, hi: int) -> dict[int, list[tuple[int, float]]]:
        """Per run: (episode, the metric of that episode: its agents' mean) for episodes ``lo``-``hi``, in order,
        one rollup row each (never the agent rows)."""
        names, params = _in_list(runs)
        sql = _EPISODE_SCORES_SQL.format(metric=METRIC_SQL[metric], runs=names)
        _, rows = self._rows.all(sql, {**params, "lo": lo, "hi": hi})
        return {run: [(episode, value) for _, episode, value in group]
                for run, group in groupby(rows, key=itemgetter(0))}  # fmt: skip

    def agent_margins(self, runs: Sequence[int], lo: int, hi: int) -> list[tuple[int, int, int, float]]:
        """(run, stage, agent, mean survival minus baseline) over episodes ``lo``-``hi``: the window's agent
        rows only, aggregated in the database."""
        names, params = _in_list(runs)
        _, rows = self._rows.all(_AGENT_MARGINS_SQL.format(runs=names), {**params, "lo": lo, "hi": hi})
        return [tuple(row) for row in rows]  # type: ignore[misc]

    def agents_below_baseline(self, runs: Sequence[int], kind: int) -> dict[tuple[int, int], int]:
        """(run, stage) -> agents that raised flag ``kind`` there, from the maintained ``baseline_flags``."""
        names, params = _in_list(runs)
        _, rows = self._rows.all(_BELOW_SQL.format(runs=names), {**params, "kind": kind})
        return {(run, stage): count for run, stage, count in rows}

    def agent_means(self, run: RunSummary, last: int) -> list[tuple[int, float, float, float, int]]:
        """Per agent, over the run's final ``last`` episodes: mean survival, mean baseline, mean reward and
        the episodes counted, in agent order (reads ``last`` episodes' rows, whatever the run's length)."""
        _, rows = self._rows.all(_AGENT_MEANS_SQL, {"run": run.id, "last": last})
        return [tuple(row) for row in rows]  # type: ignore[misc]


def _stored_config(stored: Any) -> dict[str, Any]:
    """A ``runs.config`` value as a dict: SQLite keeps the JSON text, PostgreSQL hands back the object."""
    return json.loads(stored) if isinstance(stored, str) else dict(stored or {})


def agent_not_recorded(run: RunSummary, episode: int, agent: int, head: RecordingHeader) -> NotRecorded:
    shown = ", ".join(map(str, head.agents[:20])) + (" ..." if len(head.agents) > 20 else "")
    return NotRecorded(f"agent {agent} was not recorded in episode {episode} of run {run.id}; recorded agents: {shown}")


def no_agent(run: RunSummary, agent: int | None) -> AgentNotFound:
    return AgentNotFound(f"run {run.id} has no agent {agent} (agents 0 to {run.num_agents - 1}): fix --agent")


def columns_from_rows(
    names: Sequence[str], rows: Sequence[tuple[Any, ...]], *, episode: int | None = None
) -> Iterator[AgentColumns]:
    """Stored rows -> one ``AgentColumns`` per run of rows sharing a schema version.

    Each column is checked with the DTO's own rules (``check_columns``), the same check the write path
    ran, and the dicts come out as the write path builds them: what replays is exactly what was written.
    """
    index = {name: i for i, name in enumerate(names)}
    version_at = index["schema_version"]
    for version, group in groupby(rows, key=itemgetter(version_at)):
        cls = DTO_BY_VERSION.get(version)
        if cls is None:
            raise DatabaseTooNew(f"a row was written under schema version {version}, unknown here: upgrade townlet")
        columns = list(zip(*group, strict=True))
        constants = {} if episode is None else {"episode": episode}  # one episode's rows: its number, checked once
        values = {name: columns[index[name]] for name in FIELD_NAMES[cls] if name not in constants}
        yield cls.check_columns(values, constants)
