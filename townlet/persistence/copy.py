"""``copy_runs``: whole runs from one townlet database into another (a laptop's SQLite <-> the team PostgreSQL).

Every row goes: the ``runs`` row (uuid, status, timestamps, config, code and schema version as they are),
its episodes, its agent rows, their rollups and baseline flags, its survival blocks, its checkpoints and its
recordings.
Ids are the destination's own (a run or an episode gets the next free id there; agent rows follow their
episode); everything else is copied value for value, so a copied run replays and exports byte-identically.
One destination transaction per run: a run is copied whole or not at all. Both databases must be at this
code's revision (``TelemetryStore.open`` says which to upgrade).
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, insert, select

from townlet.errors import TelemetryError
from townlet.persistence.blocks import BLOCK_COLUMNS
from townlet.persistence.engine import is_sqlite
from townlet.persistence.flags import FLAG_COLUMNS
from townlet.persistence.location import sqlite_path
from townlet.persistence.models import EPISODE_ROLLUPS, RECORDING_AGENTS, RECORDINGS, RUN_TAGS, SURVIVAL_BLOCKS
from townlet.persistence.store import (
    AGENT_COPY_COLUMNS,
    AGENTS,
    CHECKPOINTS,
    EPISODES,
    RUNS,
    SOURCE_SCHEMA,
    TelemetryStore,
)

#: Agent rows read and inserted per round trip: memory stays bounded whatever the run's size.
BATCH_ROWS = 50_000


class RunAlreadyThere(TelemetryError):
    """A run to copy is already in the destination (same uuid) and ``--skip-existing`` was not given."""


class CopyIncomplete(TelemetryError):
    """A run's agent rows read do not add up to what its rollups count (the source needs ``db check``)."""


class RunBeingTrained(TelemetryError):
    """A run to copy is being trained right now: a copy would be a snapshot of a moving run."""


@dataclass
class CopyPlan:
    """Which source runs to copy (with their agent-row counts), and which the destination already has."""

    todo: dict[int, int] = field(default_factory=dict)  # source id -> agent rows
    skipped: dict[int, int] = field(default_factory=dict)  # source id -> the destination run with its uuid

    @property
    def agent_rows(self) -> int:
        return sum(self.todo.values())


@dataclass
class CopyReport:
    """What ``copy_runs`` did: source run id -> destination run id."""

    copied: dict[int, int] = field(default_factory=dict)
    agent_rows: int = 0


def plan_into(
    dst: TelemetryStore, listed: list[tuple[int, str, int]], src_label: str, *, skip_existing: bool = False
) -> CopyPlan:
    """What to copy of the runs ``runs_to_copy`` listed, decided before anything is written: refuses a run
    ``dst`` already has (same uuid) unless ``skip_existing``, then it is skipped."""
    there = existing(dst, [uuid for _, uuid, _ in listed])
    if there and not skip_existing:
        run, uuid, _ = next(item for item in listed if item[1] in there)
        raise RunAlreadyThere(
            f"run {run} of {src_label} (uuid {uuid}) is already in {dst.label} as run {there[uuid]}: "
            "pass --skip-existing to copy only the others, or --run to choose"
        )
    plan = CopyPlan()
    for run, uuid, rows in listed:
        if uuid in there:
            plan.skipped[run] = there[uuid]
        else:
            plan.todo[run] = rows
    return plan


def runs_to_copy(src: TelemetryStore, runs: Sequence[int] | None) -> list[tuple[int, str, int]]:
    """(source id, uuid, agent rows) of each run asked for, in id order; refuses unknown or training runs."""
    with src.transaction() as c:
        query = select(RUNS.c.id, RUNS.c.run_uuid, RUNS.c.status).order_by(RUNS.c.id)
        found = {row.id: row for row in c.execute(query)}
        chosen = sorted(found) if runs is None else sorted(set(runs))
        for run in chosen:
            if run not in found:
                src.get_run(run)  # raises RunNotFound with the hint to list the runs
            if found[run].status == "running" and src.run_is_trained(c, run):
                raise RunBeingTrained(f"run {run} in {src.label} is being trained now: copy it once it has stopped")
        rows = dict(  # from the rollups: one row per episode, not per agent row
            c.execute(
                select(EPISODES.c.run_id, func.sum(EPISODE_ROLLUPS.c.agents))
                .select_from(EPISODES.join(EPISODE_ROLLUPS, EPISODE_ROLLUPS.c.episode_pk == EPISODES.c.id))
                .group_by(EPISODES.c.run_id)
            ).all()
        )
    return [(run, found[run].run_uuid, rows.get(run, 0)) for run in chosen]


def existing(dst: TelemetryStore, uuids: Sequence[str]) -> dict[str, int]:
    """uuid -> destination run id, for the given uuids already in the destination."""
    with dst.transaction() as c:
        return dict(c.execute(select(RUNS.c.run_uuid, RUNS.c.id).where(RUNS.c.run_uuid.in_(list(uuids)))).all())


def copy_runs(
    src: TelemetryStore, dst: TelemetryStore, plan: CopyPlan, *, on_rows: Callable[[int], object] = lambda n: None
) -> CopyReport:
    """Copy the planned runs, one destination transaction each; ``on_rows(n)`` hears each batch of agent rows."""
    report = CopyReport()
    attach = _attachable(src, dst)
    for run, expected in plan.todo.items():
        with src.transaction() as source, dst.transaction(attach=attach) as target:
            before = report.agent_rows
            report.copied[run] = _copy_run(source, target, run, on_rows, report, src, dst, attached=attach is not None)
            if report.agent_rows - before != expected:  # raised inside: the run's transaction rolls back
                raise CopyIncomplete(
                    f"run {run} of {src.label}: its rollups count {expected} agent rows, {report.agent_rows - before} "
                    f"were read; nothing of it was copied: run db check --repair --db {src.label} first"
                )
    return report


def _attachable(src: TelemetryStore, dst: TelemetryStore) -> Path | None:
    """SQLite to SQLite: the source file, which the destination attaches so that the database copies the
    agent rows and rollups itself (``INSERT ... SELECT``, no row through Python); else ``None``."""
    if is_sqlite(src.url) and is_sqlite(dst.url):
        return sqlite_path(src.url.database or "", read_only=True)
    return None


def _copy_run(
    source: Connection,
    target: Connection,
    run: int,
    on_rows: Callable[[int], object],
    report: CopyReport,
    src: TelemetryStore,
    dst: TelemetryStore,
    *,
    attached: bool,
) -> int:
    """Every read of ``source`` is ``src.blamed()``: it runs inside the destination's transaction, whose
    handler would otherwise name the destination for a source outage. ``attached``: the source file is
    attached to ``target`` (``_attachable``), and the rows go by SQL."""
    with src.blamed():
        row = source.execute(select(RUNS).where(RUNS.c.id == run)).mappings().one()
        episodes = (
            source.execute(select(EPISODES).where(EPISODES.c.run_id == run).order_by(EPISODES.c.episode))
            .mappings()
            .all()
        )
    new_run = target.execute(insert(RUNS).returning(RUNS.c.id), _moved(row)).scalar_one()
    episode_pk: dict[int, int] = {}
    for episode in episodes:
        moved = _moved(episode, run_id=new_run)
        episode_pk[episode["id"]] = target.execute(insert(EPISODES).returning(EPISODES.c.id), moved).scalar_one()
    moving = _Moving(run, new_run, episode_pk, on_rows, report)
    if attached:
        _copy_attached(target, moving)
    else:
        _copy_through(source, target, moving, src, dst)
    with src.blamed():
        checkpoints = source.execute(select(CHECKPOINTS).where(CHECKPOINTS.c.run_id == run)).mappings().all()
    for checkpoint in checkpoints:
        target.execute(insert(CHECKPOINTS), _moved(checkpoint, run_id=new_run))
    with src.blamed():
        tags = source.execute(select(RUN_TAGS.c.tag).where(RUN_TAGS.c.run_id == run)).scalars().all()
    if tags:
        target.execute(insert(RUN_TAGS), [{"run_id": new_run, "tag": tag} for tag in tags])
    _copy_recordings(source, target, run, episode_pk, src)
    return new_run


def _copy_recordings(
    source: Connection, target: Connection, run: int, episode_pk: dict[int, int], src: TelemetryStore
) -> None:
    """The run's recordings and their agents' blobs, value for value (small next to the agent rows)."""
    of_run = select(EPISODES.c.id).where(EPISODES.c.run_id == run)
    with src.blamed():
        recordings = source.execute(select(RECORDINGS).where(RECORDINGS.c.episode_pk.in_(of_run))).mappings().all()
        agents = (
            source.execute(select(RECORDING_AGENTS).where(RECORDING_AGENTS.c.episode_pk.in_(of_run))).mappings().all()
        )
    if recordings:
        target.execute(insert(RECORDINGS), [{**r, "episode_pk": episode_pk[r["episode_pk"]]} for r in recordings])
    if agents:
        target.execute(insert(RECORDING_AGENTS), [{**a, "episode_pk": episode_pk[a["episode_pk"]]} for a in agents])


@dataclass
class _Moving:
    """One run on its way: its id in the source and in the destination, the source's episode keys mapped to
    the destination's, and who hears of each batch of agent rows."""

    run: int
    new_run: int
    episode_pk: dict[int, int]
    on_rows: Callable[[int], object]
    report: CopyReport


def _copy_through(
    source: Connection, target: Connection, moving: _Moving, src: TelemetryStore, dst: TelemetryStore
) -> None:
    """Agent rows, rollups, flags and survival blocks read from ``source`` (agent rows in batches) and written
    by ``dst``'s bulk path."""
    run, new_run, episode_pk, report = moving.run, moving.new_run, moving.episode_pk, moving.report
    with src.blamed():
        for batch in _agent_rows(source, run):
            dst.insert_agent_rows(target, [(episode_pk[row[0]], *row[1:]) for row in batch])
            report.agent_rows += len(batch)
            moving.on_rows(len(batch))
    # The rollups go with their rows: the source's equal its rows (db check), and the rows arrive unchanged.
    with src.blamed():
        rollups = source.execute(
            select(EPISODE_ROLLUPS)
            .join(EPISODES, EPISODES.c.id == EPISODE_ROLLUPS.c.episode_pk)
            .where(EPISODES.c.run_id == run)
        ).all()
    if rollups:
        dst.insert_rollup_rows(target, [(episode_pk[row[0]], *row[1:]) for row in rollups])
    with src.blamed():
        flags = src.baseline_flag_rows(source, run)
        blocks = source.execute(select(SURVIVAL_BLOCKS).where(SURVIVAL_BLOCKS.c.run_id == run)).all()
    if flags:
        dst.insert_flag_rows(target, [(episode_pk[row[0]], *row[1:]) for row in flags])
    if blocks:
        dst.insert_block_rows(target, [(new_run, *row[1:]) for row in blocks])


#: Episodes per ``INSERT ... SELECT`` of the attached copy (one progress step each).
SPAN_EPISODES = 200
_MAP = "temp.townlet_copy_episodes"


def _copy_attached(target: Connection, moving: _Moving) -> None:
    """Agent rows, then rollups, copied by the destination from the attached source: a temporary table maps
    the destination's new episode keys to the source's, and each span of episodes is one ``INSERT ... SELECT``
    in the destination's key order (what a bare ``ATTACH`` script does, plus the mapping)."""
    run, new_run, episode_pk, report = moving.run, moving.new_run, moving.episode_pk, moving.report
    raw = target.connection.driver_connection
    raw.execute(f"CREATE TABLE {_MAP} (dst INTEGER PRIMARY KEY, src INTEGER NOT NULL)")
    try:
        raw.executemany(f"INSERT INTO {_MAP} VALUES (?, ?)", [(d, s) for s, d in episode_pk.items()])
        columns = ", ".join(AGENT_COPY_COLUMNS)
        selected = ", ".join(["m.dst", *(f"a.{name}" for name in AGENT_COPY_COLUMNS[1:])])
        rows_sql = (
            f"INSERT INTO {AGENTS.name} ({columns}) SELECT {selected} FROM {_MAP} m "
            f"JOIN {SOURCE_SCHEMA}.{AGENTS.name} a ON a.episode_pk = m.src "
            "WHERE m.dst BETWEEN ? AND ? ORDER BY m.dst, a.agent_idx"
        )
        keys = sorted(episode_pk.values())
        for start in range(0, len(keys), SPAN_EPISODES):
            span = keys[start : start + SPAN_EPISODES]
            count = raw.execute(rows_sql, (span[0], span[-1])).rowcount
            report.agent_rows += count
            moving.on_rows(count)
        rollup_columns = [c.name for c in EPISODE_ROLLUPS.c]
        raw.execute(
            f"INSERT INTO {EPISODE_ROLLUPS.name} ({', '.join(rollup_columns)}) "
            f"SELECT m.dst, {', '.join(f'r.{name}' for name in rollup_columns[1:])} FROM {_MAP} m "
            f"JOIN {SOURCE_SCHEMA}.{EPISODE_ROLLUPS.name} r ON r.episode_pk = m.src ORDER BY m.dst"
        )
        raw.execute(
            f"INSERT INTO baseline_flags ({', '.join(FLAG_COLUMNS)}) "
            f"SELECT m.dst, {', '.join(f'f.{name}' for name in FLAG_COLUMNS[1:])} FROM {_MAP} m "
            f"JOIN {SOURCE_SCHEMA}.baseline_flags f ON f.episode_pk = m.src ORDER BY m.dst"
        )
        raw.execute(
            f"INSERT INTO survival_blocks ({', '.join(BLOCK_COLUMNS)}) SELECT ?, "
            f"{', '.join(BLOCK_COLUMNS[1:])} FROM {SOURCE_SCHEMA}.survival_blocks WHERE run_id = ? ORDER BY block, grp",
            (new_run, run),
        )
    finally:
        raw.execute(f"DROP TABLE {_MAP}")


def _agent_rows(source: Connection, run: int) -> Iterator[list[tuple[Any, ...]]]:
    """The run's agent rows in ``AGENT_COPY_COLUMNS`` order, episode then agent, in batches of ``BATCH_ROWS``,
    read with the driver's own cursor (plain tuples; a server-side cursor on PostgreSQL): the copy's reads
    cost what a bare script's would."""
    columns = ", ".join(f"a.{name}" for name in AGENT_COPY_COLUMNS)
    mark = "?" if source.dialect.name == "sqlite" else "%s"
    sql = (
        f"SELECT {columns} FROM agent_snapshots a JOIN episodes e ON a.episode_pk = e.id "
        f"WHERE e.run_id = {mark} ORDER BY e.episode, a.agent_idx"
    )
    raw = source.connection.driver_connection
    cursor = raw.cursor() if source.dialect.name == "sqlite" else raw.cursor(name=f"townlet_copy_{run}")
    try:
        cursor.execute(sql, (run,))
        while batch := cursor.fetchmany(BATCH_ROWS):
            yield batch
    finally:
        cursor.close()


def _moved(row: Mapping[str, Any], **keys: int) -> dict[str, Any]:
    """A row as the destination takes it: without its own ``id`` (the destination numbers it), with its
    references (``keys``) pointing at the destination's rows."""
    return {name: value for name, value in row.items() if name != "id"} | keys
