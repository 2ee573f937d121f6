"""``copy_runs``: whole runs from one townlet database into another (a laptop's SQLite <-> the team PostgreSQL).

Every row goes: the ``runs`` row (uuid, status, timestamps, config, code and schema version as they are),
its episodes, its agent rows, their rollups and its checkpoints. Ids are the destination's own (a run or an
episode gets the next free id there; agent rows follow their episode); everything else is copied value for
value, so a copied run replays and exports byte-identically. One destination transaction per run: a run is
copied whole or not at all. Both databases must be at this code's revision (``TelemetryStore.open`` says which
to upgrade).
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, insert, select

from townlet.errors import TelemetryError
from townlet.persistence.models import EPISODE_ROLLUPS
from townlet.persistence.store import AGENT_COPY_COLUMNS, AGENTS, CHECKPOINTS, EPISODES, RUNS, TelemetryStore

#: Agent rows read and inserted per round trip: memory stays bounded whatever the run's size.
BATCH_ROWS = 50_000


class RunAlreadyThere(TelemetryError):
    """A run to copy is already in the destination (same uuid) and ``--skip-existing`` was not given."""


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
        rows = dict(
            c.execute(
                select(EPISODES.c.run_id, func.count())
                .select_from(EPISODES.join(AGENTS, AGENTS.c.episode_pk == EPISODES.c.id))
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
    for run in plan.todo:
        with src.transaction() as source, dst.transaction() as target:
            report.copied[run] = _copy_run(source, target, run, on_rows, report, src, dst)
    return report


def _copy_run(
    source: Connection,
    target: Connection,
    run: int,
    on_rows: Callable[[int], object],
    report: CopyReport,
    src: TelemetryStore,
    dst: TelemetryStore,
) -> int:
    """Every read of ``source`` is ``src.blamed()``: it runs inside the destination's transaction, whose
    handler would otherwise name the destination for a source outage."""
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
    with src.blamed():
        for batch in _agent_rows(source, run):
            dst.insert_agent_rows(target, [(episode_pk[row[0]], *row[1:]) for row in batch])
            report.agent_rows += len(batch)
            on_rows(len(batch))
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
        checkpoints = source.execute(select(CHECKPOINTS).where(CHECKPOINTS.c.run_id == run)).mappings().all()
    for checkpoint in checkpoints:
        target.execute(insert(CHECKPOINTS), _moved(checkpoint, run_id=new_run))
    return new_run


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
