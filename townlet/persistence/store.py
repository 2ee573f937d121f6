"""``TelemetryStore``: runs, episodes and agent rows in and out of the database, one transaction each."""

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Double, Engine, String, delete, func, insert, select, text, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError

from townlet import __version__
from townlet.persistence import blocks as block_sql
from townlet.persistence import flags as flag_sql
from townlet.persistence import migrate, run_labels
from townlet.persistence.blocks import BLOCK_EPISODES, BlockTracker
from townlet.persistence.engine import (
    connection_hint,
    database_url,
    describe,
    file_hint,
    is_sqlite,
    make_engine,
    migration_transaction,
)
from townlet.persistence.errors import (
    DatabaseFileGone,
    DatabaseRetryable,
    DatabaseUnavailable,
    NotATownletDatabase,
    RunNotFound,
    fault_state,
)
from townlet.persistence.flags import DEFAULT as DEFAULT_THRESHOLDS
from townlet.persistence.flags import FLAG_COLUMNS, FlagRow, FlagTracker
from townlet.persistence.location import BUSY_TIMEOUT_MS, connect_sqlite, read_only_uri, sqlite_path
from townlet.persistence.models import AGENT_FIELDS, AgentSnapshotRow, CheckpointRow, EpisodeRow, RunRow
from townlet.persistence.recordings import CHECK_SQL as RECORDING_CHECK_SQL
from townlet.persistence.recordings import insert_recording, recording_differences
from townlet.persistence.rollups import (
    DELETE_RUN,
    INSERT_RUN,
    ROLLUP_COLUMNS,
    RollupDifference,
    insert_values,
    rollup_select,
    rollup_values,
)
from townlet.persistence.rollups import differences as rollup_differences
from townlet.persistence.run_liveness import run_is_trained
from townlet.telemetry.dto import SCHEMA_VERSION, AgentColumns
from townlet.telemetry.recording import EpisodeRecording

LOG = logging.getLogger("townlet")
#: A SQLite writer truncates its ``-wal`` once it passes this size (``TelemetryStore.bound_wal``).
WAL_TRUNCATE_BYTES = 8 * 1024 * 1024
#: How long that checkpoint waits for readers of older snapshots to finish.
WAL_CHECKPOINT_WAIT_MS = 2000
RUNS, EPISODES, AGENTS = RunRow.__table__, EpisodeRow.__table__, AgentSnapshotRow.__table__
CHECKPOINTS = CheckpointRow.__table__
CHECKPOINT_COLUMNS = ("episode", "format_version", "device", "blob", "size_bytes")


@dataclass(frozen=True, slots=True)
class EpisodeMeta:
    """What the ``episodes`` table holds about one episode besides its agents."""

    episode: int
    steps: int
    curriculum_stage: int
    duration_s: float
    started_at: datetime
    finished_at: datetime
    recording: EpisodeRecording | None = None  # its recorded steps, written in the episode's transaction


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """One learner checkpoint: after which episode, its format version, the device type it was trained on, its
    bytes and the size stored beside them (``townlet.training.checkpoint`` makes, checks and reads them; the
    store only keeps them)."""

    episode: int
    format_version: int
    device: str
    blob: bytes
    size_bytes: int


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One ``runs`` row as Python values."""

    id: int
    run_uuid: str
    started_at: datetime
    ended_at: datetime | None
    status: str
    seed: int
    device: str
    num_agents: int
    config: dict[str, Any]
    code_version: str
    schema_version: int
    name: str | None = None


def now() -> datetime:
    return datetime.now(UTC)


class TelemetryStore:
    """Owns one engine on one database, already checked to be at this code's schema revision.

    ``open(db, write=True)`` creates the schema in a brand-new database and refuses an existing one that is
    older or newer; ``write=False`` never creates, migrates or writes anything.
    """

    def __init__(self, engine: Engine, url: URL, *, writable: bool) -> None:
        self.engine = engine
        self.url = url
        self.label = describe(url)
        self.writable = writable
        self.created = False
        self._agent_insert_sql = _positional_insert(AGENTS) if is_sqlite(url) else None
        self._rollup_insert_sql = insert_values("?" if is_sqlite(url) else "%s")
        self._flag_insert_sql = flag_sql.insert_values("?" if is_sqlite(url) else "%s")
        #: Per run this store writes: the baseline flags' state after its last committed episode (``flags.py``),
        #: and the open survival block's sums (``blocks.py``).
        self._flag_trackers: dict[int, FlagTracker] = {}
        self._block_trackers: dict[int, BlockTracker] = {}
        self._block_insert_sql = block_sql.insert_values("?" if is_sqlite(url) else "%s")
        #: PostgreSQL: agent rows go in with COPY (binary); False falls back to executemany (benchmarks compare).
        self.pg_copy = url.get_backend_name() == "postgresql"
        self._file_identity: tuple[int, int] | None = None  # the SQLite file this store writes (see use_wal)
        self._in_wal = False  # this store switched the file to WAL: it switches it back on close

    @property
    def db_flag(self) -> str:
        return f"--db {self.label}"

    @classmethod
    def open(cls, db: str, *, write: bool, must_exist: bool = False, wal: bool = True) -> "TelemetryStore":
        """``must_exist``: a writer that may not create the database (``--resume``) refuses a missing file.
        ``wal=False``: a writer that may still refuse leaves the file's journal mode alone until it calls
        ``use_wal()``, so a refusal leaves an existing SQLite file byte-identical."""
        url = database_url(db)
        if must_exist and is_sqlite(url):
            sqlite_path(url.database or "", read_only=True)  # raises DatabaseNotFound, creating nothing
        store = cls(make_engine(url, read_only=not write), url, writable=write)
        try:
            with store.transaction(migrating=write) as connection:
                if write:
                    store.created = migrate.prepare_for_writing(connection, store.label, db_flag=store.db_flag)
                else:
                    migrate.require_current(connection, store.label, db_flag=store.db_flag)
            if write and wal:
                store.use_wal()
        except BaseException:
            store.close()
            raise
        return store

    def use_wal(self) -> None:
        """Put a SQLite database (known to be townlet's) in WAL mode while this store writes it (readers and
        a writer at once); ``close()`` puts it back. No-op elsewhere."""
        if not is_sqlite(self.url):
            return
        self._file_identity = _file_identity(self.url)
        raw = self.engine.raw_connection()
        sql = "PRAGMA journal_mode = WAL"
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        try:
            while True:
                try:
                    raw.driver_connection.execute(sql).close()  # outside any transaction
                    break
                except sqlite3.OperationalError as exc:
                    # Another writer switching the file's journal mode at the same moment: SQLite answers "locked"
                    # at once here, without its busy handler, so wait it out as the busy timeout would.
                    if "locked" not in str(exc) or time.monotonic() >= deadline:
                        raise
                    time.sleep(0.05)
        except sqlite3.Error as exc:  # e.g. a read-only file: the same one-line error as any failed write
            raise _explain(DBAPIError.instance(sql, None, exc, sqlite3.Error), self.label) from exc
        finally:
            raw.close()
        self._in_wal = True

    def bound_wal(self, busy_timeout_ms: int = WAL_CHECKPOINT_WAIT_MS) -> bool:
        """Keep a SQLite file's ``-wal`` bounded while readers come and go: once it passes
        ``WAL_TRUNCATE_BYTES``, checkpoint it and truncate it to zero (``PRAGMA wal_checkpoint(TRUNCATE)``).

        SQLite's own automatic checkpoints copy pages back but cannot restart the log while any reader holds
        an older snapshot, so under back-to-back dashboard reads the file grew without bound. TRUNCATE waits
        (up to ``busy_timeout_ms``) for the readers of older snapshots to finish; new readers read the newest
        snapshot and do not hold it up. Returns whether it truncated; a checkpoint still busy after the wait
        is tried again after the next episode. Called by the background writer after each committed episode
        (one ``stat`` when the log is small). No-op for a file this store did not put in WAL mode.
        """
        if not self._in_wal:
            return False
        try:
            size = os.stat(f"{self.url.database}-wal").st_size
        except FileNotFoundError:
            return False
        if size < WAL_TRUNCATE_BYTES:
            return False
        sql = "PRAGMA wal_checkpoint(TRUNCATE)"
        raw = self.engine.raw_connection()
        try:
            driver = raw.driver_connection
            driver.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            try:
                busy, _, _ = driver.execute(sql).fetchone()
            finally:
                driver.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        except sqlite3.Error as exc:  # a full disk, an I/O error: a fault like any failed write
            raise _explain(DBAPIError.instance(sql, None, exc, sqlite3.Error), self.label) from exc
        finally:
            raw.close()
        return busy == 0

    @classmethod
    def open_unchecked(cls, db: str, *, write: bool) -> "TelemetryStore":
        """For ``db`` commands that inspect or migrate a database whatever its revision."""
        url = database_url(db)
        return cls(make_engine(url, read_only=not write), url, writable=write)

    def close(self) -> None:
        self.engine.dispose()
        if self._in_wal and _file_identity(self.url) == self._file_identity:  # not a new file at that path
            self._leave_wal()

    def _leave_wal(self) -> None:
        """Put a SQLite file back in rollback-journal mode as its last writer closes it.

        At rest the file then has no ``-wal``/``-shm`` sidecars, so any user who can read the file reads it
        without creating any (a reader's sidecars would belong to that user and lock the owner out).
        Another connection still open (a second trainer, a reader) keeps WAL on; the last writer to close
        switches it.
        """
        try:
            connection = connect_sqlite(Path(self.url.database or ""), read_only=False)
        except sqlite3.Error:
            return  # the file is gone or unwritable now: nothing to switch
        try:
            connection.execute("PRAGMA busy_timeout = 100")
            connection.execute("PRAGMA journal_mode = DELETE").fetchall()
        except sqlite3.OperationalError as exc:
            # Expected: someone else still has it open (they switch it as they close), or it cannot be
            # written at all (then it was never switched to WAL by us). A full disk or an I/O error leaves it in
            # WAL mode, which is safe: said in one line, never raised from close (it would mask the real error).
            # Anything else is a real fault.
            message = str(exc)
            if fault_state(message) != "busy":
                LOG.warning(
                    f"note: {self.label} stays in WAL mode ({message}): its -wal and -shm files go when the next "
                    "townlet writer closes it"
                )
            elif not any(word in message for word in ("locked", "busy", "readonly")):
                raise
        finally:
            connection.close()

    def require_same_file(self) -> None:
        """Refuse to go on writing when the SQLite file this store opened was deleted or replaced."""
        if self._file_identity is None or _file_identity(self.url) == self._file_identity:
            return
        raise DatabaseFileGone(
            f"{self.label} was deleted or replaced while this process had it open: episodes written since "
            "are lost with the old file; restore it or train into a new --db"
        )

    def __enter__(self) -> "TelemetryStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(
        self, *, busy_timeout_ms: int | None = None, migrating: bool = False, attach: Path | None = None
    ) -> Iterator[Connection]:
        """One transaction; driver errors become one-line ``DatabaseError``s naming the database.

        ``busy_timeout_ms`` shortens how long this transaction waits for another process's SQLite lock
        (the background writer waits in short steps so it can say so and be stopped). ``migrating``: the
        transaction may change the schema (``engine.migration_transaction``). ``attach``: another SQLite
        file, attached read-only as ``SOURCE_SCHEMA`` for this transaction (SQLite only; ``db copy``).
        """
        try:
            with (
                self.engine.connect() as connection,
                _busy_timeout(connection, busy_timeout_ms),
                _attached(connection, attach),
                migration_transaction(connection) if migrating else connection.begin(),
            ):
                yield connection
        except DBAPIError as exc:
            raise _explain(exc, self.label) from exc

    @contextmanager
    def blamed(self) -> Iterator[None]:
        """Driver errors raised inside become this database's one-line errors, even inside another store's
        transaction (``db copy`` reads the source inside the destination's: a source outage names the source)."""
        try:
            yield
        except DBAPIError as exc:
            raise _explain(exc, self.label) from exc

    # -- runs -----------------------------------------------------------------------------------

    def create_run(
        self,
        *,
        run_uuid: str,
        seed: int,
        device: str,
        num_agents: int,
        config: dict[str, Any],
        before_commit: Callable[[int], object] = lambda run: None,
        name: str | None = None,
        tags: Sequence[str] = (),
    ) -> int:
        """Insert a ``running`` run with its name and tags (checked by ``run_labels`` first); ``before_commit(run)``
        runs before anyone can see it (take its lock there, so no other process ever sees a running run nobody
        holds, i.e. calls it stale)."""
        with self.transaction() as c:
            run = c.execute(
                insert(RUNS).returning(RUNS.c.id),
                {
                    "run_uuid": run_uuid,
                    "started_at": now(),
                    "ended_at": None,
                    "status": "running",
                    "seed": seed,
                    "device": device,
                    "num_agents": num_agents,
                    "config": config,
                    "code_version": __version__,
                    "schema_version": SCHEMA_VERSION,
                    "name": name,
                },
            ).scalar_one()
            run_labels.insert_tags(c, run, tags)
            before_commit(run)
            return run

    def label_run(
        self, run: int, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> tuple[list[str], list[str]]:
        """Add and remove tags in one transaction; returns the tags added and removed. Labels never change what
        was trained, so a run being trained may be labelled."""
        with self.transaction() as c:
            self.require_runs(c, [run])
            return run_labels.insert_tags(c, run, add), run_labels.remove_tags(c, run, remove)

    def set_run_status(self, run: int, status: str, *, busy_timeout_ms: int | None = None) -> None:
        ended = None if status == "running" else now()
        with self.transaction(busy_timeout_ms=busy_timeout_ms) as c:
            c.execute(update(RUNS).where(RUNS.c.id == run).values(status=status, ended_at=ended))

    def mark_stale_runs(self) -> list[int]:
        """Store ``stale`` for every ``running`` run whose lock nobody holds (its process died without saying
        so, e.g. kill -9), ended at its last episode; returns their ids. A trainer that takes such a run's
        lock meanwhile sets ``running`` after this transaction commits, so it never stays wrongly stale."""
        with self.transaction() as c:
            running = c.execute(select(RUNS.c.id).where(RUNS.c.status == "running")).scalars().all()
            stale = [run for run in running if not self.run_is_trained(c, run)]
            for run in stale:
                last = select(func.max(EPISODES.c.finished_at)).where(EPISODES.c.run_id == run).scalar_subquery()
                c.execute(
                    update(RUNS)
                    .where(RUNS.c.id == run)
                    .values(status="stale", ended_at=func.coalesce(last, RUNS.c.started_at))
                )
        return stale

    def run_is_trained(self, connection: Connection, run: int) -> bool:
        """Whether a process holds the run's lock right now (``run_liveness``)."""
        return run_is_trained(run, self.url, lambda sql, params: connection.execute(text(sql), params).scalar_one())

    def rename_run(self, run: int, name: str | None) -> None:
        """Name the run (``None`` removes its name); a run being trained may be renamed."""
        with self.transaction() as c:
            self.require_runs(c, [run])
            run_labels.set_name(c, run, name)

    def _refuse_trained(self, connection: Connection, runs: Sequence[int]) -> None:
        for run in runs:
            if self.run_is_trained(connection, run):
                raise run_labels.RunBeingTrained(
                    f"run {run} is being trained by another process: stop it (Ctrl-C) before deleting it"
                )

    def run_contents(self, runs: Sequence[int]) -> list[run_labels.RunContents]:
        """What deleting ``runs`` removes, counted; refuses a run that does not exist or that a process is
        training right now (nothing is changed)."""
        with self.transaction() as c:
            self.require_runs(c, runs)
            self._refuse_trained(c, runs)
            return run_labels.run_contents(c, runs)

    def delete_runs(self, runs: Sequence[int]) -> None:
        """Delete ``runs`` and everything stored with them, in one transaction; refuses a run being trained."""
        with self.transaction() as c:
            self._refuse_trained(c, runs)
            run_labels.delete_runs(c, runs)

    def no_run(self, run: int) -> RunNotFound:
        return RunNotFound(f"no run {run} in {self.label}: list runs with `townlet-telemetry runs {self.db_flag}`")

    def require_runs(self, connection: Connection, runs: Sequence[int]) -> None:
        """Refuse the first of ``runs`` that does not exist."""
        have = set(connection.execute(select(RUNS.c.id).where(RUNS.c.id.in_(list(runs)))).scalars())
        for run in runs:
            if run not in have:
                raise self.no_run(run)

    def get_run(self, run: int) -> RunInfo:
        with self.transaction() as c:
            row = c.execute(select(RUNS).where(RUNS.c.id == run)).mappings().one_or_none()
        if row is None:
            raise self.no_run(run)
        return RunInfo(**row)

    def has_episode(self, run: int, episode: int, busy_timeout_ms: int | None = None) -> bool:
        """Whether ``(run, episode)`` is committed: looked up before writing again after an unknown outcome."""
        with self.transaction(busy_timeout_ms=busy_timeout_ms) as c:
            found = c.execute(
                select(EPISODES.c.id).where(EPISODES.c.run_id == run, EPISODES.c.episode == episode)
            ).first()
        return found is not None

    def last_episode(self, run: int) -> tuple[int, int] | None:
        """(episode number, curriculum stage) of the run's last committed episode, or None."""
        with self.transaction() as c:
            row = c.execute(
                select(EPISODES.c.episode, EPISODES.c.curriculum_stage)
                .where(EPISODES.c.run_id == run)
                .order_by(EPISODES.c.episode.desc())
                .limit(1)
            ).one_or_none()
        return None if row is None else (row.episode, row.curriculum_stage)

    def checkpoint(self, run: int, episode: int | None = None) -> StoredCheckpoint | None:
        """The run's checkpoint after ``episode`` (default: its newest), or None (a run trained before revision
        0003 has none)."""
        with self.transaction() as c:
            query = select(*(CHECKPOINTS.c[name] for name in CHECKPOINT_COLUMNS)).where(CHECKPOINTS.c.run_id == run)
            if episode is not None:
                query = query.where(CHECKPOINTS.c.episode == episode)
            row = c.execute(query.order_by(CHECKPOINTS.c.episode.desc()).limit(1)).one_or_none()
        return None if row is None else _stored_checkpoint(row)

    def checkpoints(self) -> Iterator[tuple[int, StoredCheckpoint]]:
        """Every stored checkpoint as ``(run, checkpoint)``, one read at a time (``db check`` verifies them)."""
        with self.transaction() as c:
            keys = c.execute(select(CHECKPOINTS.c.run_id, CHECKPOINTS.c.episode).order_by("run_id", "episode")).all()
        for run, episode in keys:
            checkpoint = self.checkpoint(run, episode)
            if checkpoint is not None:  # pruned meanwhile by a trainer
                yield run, checkpoint

    def checkpoint_sizes(self, run: int) -> dict[int, int]:
        """Episode -> bytes of each checkpoint the run keeps."""
        with self.transaction() as c:
            rows = c.execute(
                select(CHECKPOINTS.c.episode, CHECKPOINTS.c.size_bytes)
                .where(CHECKPOINTS.c.run_id == run)
                .order_by(CHECKPOINTS.c.episode)
            ).all()
        return dict(rows)

    def resume_run(self, run: int, *, after: int | None) -> None:
        """Mark the run ``running`` again; with ``after``, delete its episodes (and checkpoints) past that
        episode in the same transaction, to be trained again from the checkpoint."""
        self._forget(run)  # rebuilt from what stays stored
        with self.transaction() as c:
            if after is not None:
                c.execute(delete(CHECKPOINTS).where(CHECKPOINTS.c.run_id == run, CHECKPOINTS.c.episode > after))
                c.execute(text(block_sql.DELETE_AFTER), {"run": run, "after": after})
                # Agent rows go with their episodes (ON DELETE CASCADE).
                c.execute(delete(EPISODES).where(EPISODES.c.run_id == run, EPISODES.c.episode > after))
            c.execute(update(RUNS).where(RUNS.c.id == run).values(status="running", ended_at=None))

    # -- episodes -------------------------------------------------------------------------------

    def write_episode(
        self,
        run: int,
        episode: EpisodeMeta,
        agents: AgentColumns,
        *,
        checkpoint: StoredCheckpoint | None = None,
        keep_checkpoints: int = 1,
        busy_timeout_ms: int | None = None,
        guard: Callable[[Connection], object] = lambda connection: None,
    ) -> None:
        """Write one episode, all its agents (columns the DTO checked), its rollup (``rollups``), its baseline
        flags (``flags``), when it completes one, its survival block (``blocks``) and, when it was recorded,
        its recording (``recordings``) in one transaction: whole or not at all.

        With ``checkpoint``, the learner checkpoint taken after this episode goes in the same transaction, and
        the run's older checkpoints beyond the newest ``keep_checkpoints`` are deleted there too. ``guard``
        runs first inside the transaction (the trainer checks there that it still holds its run's lock).
        """
        try:
            self._write_episode(run, episode, agents, checkpoint, keep_checkpoints, busy_timeout_ms, guard)
        except BaseException:
            self._forget(run)  # committed or not: the next write rebuilds the state from the rows
            raise
        self._flag_trackers[run].advance()  # committed: the flags' state and the open block move on
        self._block_trackers[run].advance()

    def _forget(self, run: int) -> None:
        self._flag_trackers.pop(run, None)
        self._block_trackers.pop(run, None)

    def _write_episode(
        self,
        run: int,
        episode: EpisodeMeta,
        agents: AgentColumns,
        checkpoint: StoredCheckpoint | None,
        keep_checkpoints: int,
        busy_timeout_ms: int | None,
        guard: Callable[[Connection], object],
    ) -> None:
        with self.transaction(busy_timeout_ms=busy_timeout_ms) as c:
            guard(c)
            episode_pk = c.execute(
                insert(EPISODES).returning(EPISODES.c.id),
                {
                    "run_id": run,
                    "episode": episode.episode,
                    "steps": episode.steps,
                    "curriculum_stage": episode.curriculum_stage,
                    "duration_s": episode.duration_s,
                    "started_at": episode.started_at,
                    "finished_at": episode.finished_at,
                },
            ).scalar_one()
            if agents.num_agents:
                self._insert_agents(c, episode_pk, agents)
            # The rollup of the rows just written, in this transaction: it is its episode's (rollups.py).
            self.insert_rollup_rows(c, [(episode_pk, *rollup_values(agents))])
            tracker = self._flags_of(c, run, agents, episode.episode)
            facts = agents.facts.get("survival_steps"), agents.facts.get("baseline_survival_steps")
            flags = tracker.flags(
                episode_pk, episode.episode, agents.columns["agent_idx"], agents.columns["curriculum_stage"],
                agents.columns["baseline_survival_steps"], agents.columns["survival_steps"],
                None if None in facts else (facts[0].low, facts[1].high),
            )  # fmt: skip
            if flags:
                self.insert_flag_rows(c, flags)
            blocks = self._blocks_of(c, run, episode.episode).add(
                episode.episode, agents.columns["agent_idx"], agents.columns["survival_steps"]
            )
            if blocks:
                self.insert_block_rows(c, blocks)
            if episode.recording is not None:
                insert_recording(c, episode_pk, episode.recording)
            if checkpoint is not None:
                self._insert_checkpoint(c, run, checkpoint, keep_checkpoints)

    def _insert_agents(self, c: Connection, episode_pk: int, agents: AgentColumns) -> None:
        rows = agents.tuples(AGENT_FIELDS)  # zipped straight from the checked columns, in table column order
        if self._agent_insert_sql is not None:
            # SQLite fast path: the tuples go lazily to executemany; the episode key is last_insert_rowid(), i.e.
            # the episodes row just inserted (inserts into a WITHOUT ROWID table leave it unchanged), so the
            # statement text never changes and stays cached.
            _executemany(c, self._agent_insert_sql.format(schema_version=agents.schema_version), rows)
        elif self.pg_copy:
            # PostgreSQL fast path: psycopg's binary COPY on the transaction's own connection, one row per agent.
            key = (episode_pk, agents.schema_version)
            _copy_agent_rows(c, (key + row for row in rows))
        else:
            key = {"episode_pk": episode_pk, "schema_version": agents.schema_version}
            c.execute(insert(AGENTS), [dict(zip(AGENT_FIELDS, row, strict=True), **key) for row in rows])

    def insert_agent_rows(self, c: Connection, rows: list[tuple[Any, ...]]) -> None:
        """Agent rows as tuples in ``AGENT_COPY_COLUMNS`` order (the episode key and schema version first), by
        the engine's bulk path: SQLite ``executemany`` of positional tuples, PostgreSQL binary ``COPY``
        (``db copy`` moves whole runs this way)."""
        if is_sqlite(self.url):
            _executemany(c, AGENT_ROWS_INSERT_SQL, rows)
        else:
            _copy_agent_rows(c, rows)

    def insert_rollup_rows(self, c: Connection, rows: list[tuple[Any, ...]]) -> None:
        """``episode_rollups`` rows, the episode key first then ``rollup_values`` (the write path's one per
        episode; ``db copy`` carries a run's at once)."""
        c.exec_driver_sql(self._rollup_insert_sql, rows)

    @staticmethod
    def _insert_checkpoint(c: Connection, run: int, checkpoint: StoredCheckpoint, keep: int) -> None:
        c.execute(
            insert(CHECKPOINTS),
            {
                "run_id": run,
                "episode": checkpoint.episode,
                "created_at": now(),
                "format_version": checkpoint.format_version,
                "device": checkpoint.device,
                "size_bytes": len(checkpoint.blob),
                "blob": checkpoint.blob,
            },
        )
        newest = (
            select(CHECKPOINTS.c.episode)
            .where(CHECKPOINTS.c.run_id == run)
            .order_by(CHECKPOINTS.c.episode.desc())
            .limit(keep)
            .scalar_subquery()
        )
        c.execute(delete(CHECKPOINTS).where(CHECKPOINTS.c.run_id == run, CHECKPOINTS.c.episode.not_in(newest)))

    # -- baseline flags -------------------------------------------------------------------------

    def _flags_of(self, c: Connection, run: int, agents: AgentColumns, episode: int) -> FlagTracker:
        """The run's flag state before ``episode``: kept from the last episode this store wrote, else rebuilt
        from the newest stored episodes (one query of ``streak`` episodes; an agent missing there is looked up
        alone, by its own newest rows)."""
        tracker = self._flag_trackers.get(run)
        if tracker is None:
            tracker = self._flag_trackers[run] = FlagTracker()
            window = DEFAULT_THRESHOLDS.streak
            params = {"run": run, "before": episode, "episodes": window}
            tracker.complete = c.execute(text(_NEWEST_EPISODES_SQL), params).scalar_one() < window  # all of them
            history = c.execute(text(_NEWEST_ROWS_SQL), params).all()
            history.sort(key=lambda row: (row[0], -row[1]))  # each agent's rows newest first
            unresolved = tracker.restore(history)
            if not tracker.complete:
                for agent in sorted(unresolved):
                    self._restore_agent(c, tracker, run, agent, episode)
        if not tracker.complete:  # an agent not seen yet may have older rows
            for agent in tracker.unknown(agents.columns["agent_idx"]):
                self._restore_agent(c, tracker, run, agent, episode)
        return tracker

    @staticmethod
    def _restore_agent(c: Connection, tracker: FlagTracker, run: int, agent: int, episode: int) -> None:
        """One agent's state from its own newest stored rows (those before ``episode``)."""
        params = {"run": run, "agent": agent, "before": episode, "rows": DEFAULT_THRESHOLDS.streak}
        tracker.restore([(agent, *row) for row in c.execute(text(_AGENT_NEWEST_ROWS_SQL), params)])

    # -- survival blocks ------------------------------------------------------------------------

    def _blocks_of(self, c: Connection, run: int, episode: int) -> BlockTracker:
        """The run's open survival block before ``episode``: kept from the last episode this store wrote, else
        summed from the block's stored episodes (at most ``BLOCK_EPISODES - 1`` of them)."""
        tracker = self._block_trackers.get(run)
        if tracker is None:
            agents = c.execute(select(RUNS.c.num_agents).where(RUNS.c.id == run)).scalar_one()
            tracker = self._block_trackers[run] = BlockTracker(run, agents)
            block = (episode - 1) // BLOCK_EPISODES
            if agents > 0 and episode - 1 > block * BLOCK_EPISODES:
                params = {"run": run, "first": block * BLOCK_EPISODES + 1, "last": episode - 1}
                params |= {"groups": block_sql.group_count(agents), "agents": agents}
                tracker.restore(block, iter(c.execute(text(block_sql.ROW_SUMS), params).all()))
        return tracker

    def insert_block_rows(self, c: Connection, rows: list[tuple[Any, ...]]) -> None:
        """``survival_blocks`` rows in ``BLOCK_COLUMNS`` order (a completed block's; ``db copy``'s)."""
        c.exec_driver_sql(self._block_insert_sql, rows)

    def check_blocks(self) -> Iterator[block_sql.BlockDifference]:
        """Every stored survival block its run's agent rows do not give (or that is missing), run by run."""
        stored_sql = text(f"SELECT {', '.join(block_sql.BLOCK_COLUMNS)} FROM survival_blocks WHERE run_id = :run")
        for run in self._run_ids():
            with self.transaction() as c:
                stored = c.execute(stored_sql, {"run": run}).all()
                computed = c.execute(text(block_sql.blocks_select("r.id = :run")), {"run": run}).all()
            yield from block_sql.differences(run, stored, computed)

    def rebuild_blocks(self, run: int) -> int:
        """Sum the run's survival blocks again from its agent rows, in one transaction; returns the rows."""
        return self._rebuild(run, block_sql.DELETE_RUN, block_sql.INSERT_RUN)

    # -- baseline flags (rows) --------------------------------------------------------------------

    def insert_flag_rows(self, c: Connection, rows: list[tuple[Any, ...]]) -> None:
        """``baseline_flags`` rows in ``FLAG_COLUMNS`` order (the write path's per episode; ``db copy``'s)."""
        c.exec_driver_sql(self._flag_insert_sql, rows)

    def baseline_flag_rows(self, c: Connection, run: int) -> list[FlagRow]:
        """The run's stored flags, as rows."""
        stored = c.execute(
            text(
                f"SELECT {', '.join('f.' + name for name in FLAG_COLUMNS)} FROM baseline_flags f "
                "JOIN episodes e ON e.id = f.episode_pk WHERE e.run_id = :run"
            ),
            {"run": run},
        )
        return [FlagRow(*row) for row in stored]

    def check_flags(self) -> Iterator[flag_sql.FlagDifference]:
        """Every stored baseline flag its run's agent rows no longer raise, and every one they raise that is
        not stored, run by run (one read transaction each; a full scan, like the rollups' check)."""
        for run in self._run_ids():
            with self.transaction() as c:
                numbers = dict(
                    c.execute(select(EPISODES.c.id, EPISODES.c.episode).where(EPISODES.c.run_id == run)).all()
                )
                stored = self.baseline_flag_rows(c, run)
                computed = c.execute(text(flag_sql.flags_select("e.run_id = :run")), {"run": run}).all()
            yield from flag_sql.differences(run, numbers, stored, computed)

    def rebuild_flags(self, run: int) -> int:
        """Compute the run's baseline flags again from its agent rows, in one transaction; returns the flags."""
        return self._rebuild(run, flag_sql.DELETE_RUN, flag_sql.INSERT_RUN)

    # -- rollups --------------------------------------------------------------------------------

    def check_rollups(self) -> Iterator[RollupDifference]:
        """Every episode whose stored rollup differs from what its agent rows give now (or that has none), run
        by run, one read transaction each (memory: one run's rollup rows)."""
        stored_sql = text(
            f"SELECT {', '.join('r.' + name for name in ROLLUP_COLUMNS)} FROM episode_rollups r "
            "JOIN episodes e ON e.id = r.episode_pk WHERE e.run_id = :run"
        )
        computed_sql = text(rollup_select("e.run_id = :run"))
        for run in self._run_ids():
            with self.transaction() as c:
                numbers = dict(
                    c.execute(select(EPISODES.c.id, EPISODES.c.episode).where(EPISODES.c.run_id == run)).all()
                )
                stored = c.execute(stored_sql, {"run": run}).all()
                computed = c.execute(computed_sql, {"run": run}).all()
            yield from rollup_differences(run, numbers, stored, computed)

    def rebuild_rollups(self, run: int) -> int:
        """Compute every rollup of the run again from its agent rows, in one transaction; returns the episodes."""
        return self._rebuild(run, DELETE_RUN, INSERT_RUN)

    # -- recordings -----------------------------------------------------------------------------

    def check_recordings(self) -> tuple[int, list[str]]:
        """How many recorded agents there are, and one line per one that disagrees with its agent row (steps,
        death cause, reward, final meters, visits) or does not decode; run by run."""
        checked, problems = 0, []
        for run in self._run_ids():
            with self.transaction() as c:
                rows = [tuple(row) for row in c.execute(text(RECORDING_CHECK_SQL), {"run": run})]
            checked += len(rows)
            problems.extend(recording_differences(run, rows))
        return checked, problems

    # -- what every derived table shares ----------------------------------------------------------

    def _run_ids(self) -> list[int]:
        with self.transaction() as c:
            return list(c.execute(select(RUNS.c.id).order_by(RUNS.c.id)).scalars())

    def _rebuild(self, run: int, delete_sql: str, insert_sql: str) -> int:
        """Delete a run's derived rows and compute them again from its agent rows, in one transaction (the
        write path's in-memory state of the run goes too: the next episode rebuilds it from the rows)."""
        self._forget(run)
        with self.transaction() as c:
            c.execute(text(delete_sql), {"run": run})
            return c.execute(text(insert_sql), {"run": run}).rowcount

    def count_rows(self) -> dict[str, int]:
        with self.transaction() as c:
            return {
                t.name: c.execute(select(func.count()).select_from(t)).scalar_one() for t in (RUNS, EPISODES, AGENTS)
            }


#: ``COPY agent_snapshots (...) FROM STDIN (FORMAT BINARY)``: the episode key, the row's schema version and
#: the agent fields, and each column's PostgreSQL type in that order.
AGENT_COPY_COLUMNS = ("episode_pk", "schema_version", *AGENT_FIELDS)
AGENT_COPY_SQL = f"COPY {AGENTS.name} ({', '.join(AGENT_COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
AGENT_ROWS_INSERT_SQL = (
    f"INSERT INTO {AGENTS.name} ({', '.join(AGENT_COPY_COLUMNS)}) VALUES ({', '.join('?' for _ in AGENT_COPY_COLUMNS)})"
)
AGENT_COPY_TYPES = [
    "float8"
    if isinstance(AGENTS.c[name].type, Double)
    else "varchar"
    if isinstance(AGENTS.c[name].type, String)
    else "int4"
    for name in AGENT_COPY_COLUMNS
]


#: How many of the newest ``:episodes`` episodes before ``:before`` the run has (fewer: it has no others).
_NEWEST_EPISODES_SQL = """
SELECT count(*) FROM (SELECT id FROM episodes WHERE run_id = :run AND episode < :before LIMIT :episodes) newest
"""
#: The agent rows of a run's newest ``:episodes`` episodes before ``:before``: what the flags' state needs.
_NEWEST_ROWS_SQL = """
SELECT a.agent_idx, e.episode, a.curriculum_stage, a.baseline_survival_steps, a.survival_steps
FROM agent_snapshots a JOIN episodes e ON e.id = a.episode_pk
WHERE e.id IN (SELECT id FROM episodes WHERE run_id = :run AND episode < :before ORDER BY episode DESC LIMIT :episodes)
"""
#: One agent's newest ``:rows`` rows of a run before episode ``:before``, newest first.
_AGENT_NEWEST_ROWS_SQL = """
SELECT e.episode, a.curriculum_stage, a.baseline_survival_steps, a.survival_steps
FROM episodes e JOIN agent_snapshots a ON a.episode_pk = e.id AND a.agent_idx = :agent
WHERE e.run_id = :run AND e.episode < :before ORDER BY e.episode DESC LIMIT :rows
"""


def _executemany(c: Connection, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
    """SQLite: positional rows through the transaction's own driver cursor, errors raised exactly as SQLAlchemy
    would raise them (IntegrityError, ...)."""
    cursor = c.connection.driver_connection.cursor()
    try:
        cursor.executemany(sql, rows)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, None, exc, sqlite3.Error) from exc
    finally:
        cursor.close()


def _copy_agent_rows(c: Connection, rows: Iterable[tuple[Any, ...]]) -> None:
    """PostgreSQL: agent rows in ``AGENT_COPY_COLUMNS`` order through psycopg's binary COPY on the
    transaction's own connection, a psycopg error raised exactly as SQLAlchemy would raise it."""
    raw = c.connection.driver_connection
    try:
        with raw.cursor() as cursor, cursor.copy(AGENT_COPY_SQL) as copy:
            copy.set_types(AGENT_COPY_TYPES)
            for row in rows:
                copy.write_row(row)
    except Exception as exc:
        if not isinstance(exc, raw.Error):
            raise
        raise DBAPIError.instance(AGENT_COPY_SQL, None, exc, raw.Error) from exc


def _stored_checkpoint(row: Any) -> StoredCheckpoint:
    return StoredCheckpoint(row.episode, row.format_version, row.device, bytes(row.blob), row.size_bytes)


def _positional_insert(table: Any) -> str:
    """``INSERT ... VALUES (last_insert_rowid(), {schema_version}, ?, ...)``: one ``?`` per agent field."""
    columns = ["episode_pk", "schema_version", *AGENT_FIELDS]
    values = ["last_insert_rowid()", "{schema_version}", *("?" for _ in AGENT_FIELDS)]
    return f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join(values)})"


#: The schema name of a file attached by ``transaction(attach=...)``.
SOURCE_SCHEMA = "townlet_source"


@contextmanager
def _attached(connection: Connection, path: Path | None) -> Iterator[None]:
    """``path`` attached read-only to a SQLite connection around one transaction (ATTACH and DETACH cannot
    run inside one), detached again before the pooled connection goes back."""
    if path is None:
        yield
        return
    raw = connection.connection.driver_connection
    raw.execute(f"ATTACH DATABASE ? AS {SOURCE_SCHEMA}", (read_only_uri(path),))
    raw.execute("PRAGMA foreign_keys = OFF")  # a copy's rows point at the episodes it has just inserted
    try:
        yield
    finally:
        raw.execute("PRAGMA foreign_keys = ON")
        raw.execute(f"DETACH DATABASE {SOURCE_SCHEMA}")


@contextmanager
def _busy_timeout(connection: Connection, busy_timeout_ms: int | None) -> Iterator[None]:
    """Set a SQLite connection's busy timeout for one transaction, then restore townlet's default."""
    if busy_timeout_ms is None or connection.dialect.name != "sqlite":
        yield
        return
    raw = connection.connection.driver_connection
    raw.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    try:
        yield
    finally:
        raw.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def _file_identity(url: URL) -> tuple[int, int] | None:
    """(device, inode) of a SQLite file, ``(-1, -1)`` once it is gone, None for a server database."""
    if not is_sqlite(url) or not url.database:
        return None
    try:
        stat = os.stat(url.database)
    except FileNotFoundError:
        return (-1, -1)
    return (stat.st_dev, stat.st_ino)


#: PostgreSQL's SQLSTATE for "permission denied" and "must be owner".
INSUFFICIENT_PRIVILEGE = "42501"

#: Driver words that mean the server cannot be reached at all (as opposed to a lock or a full disk).
UNREACHABLE_MARKERS = (
    "connection",
    "server closed",
    "terminating",
    "could not connect",
    "the database system is",
    "no route to host",
    "timeout expired",
)


def _explain(exc: DBAPIError, label: str) -> Exception:
    """Turn a driver error into the one-line error a user can act on.

    Operational faults (a lock held past the busy timeout, a full disk, a lost server connection) become
    ``DatabaseRetryable``: the background writer waits them out; any other command reports them in one line.
    """
    original = exc.orig
    message = str(original).strip().splitlines()[0] if original is not None else str(exc)
    if isinstance(original, sqlite3.DatabaseError) and "file is not a database" in message:
        return NotATownletDatabase(f"{label} is not a SQLite database ({message}): point --db at a townlet database")
    if isinstance(original, sqlite3.DatabaseError) and "malformed" in message:
        return NotATownletDatabase(
            f"{label} is damaged ({message}): restore it from a backup (DB.bak-*) or point --db at another file"
        )
    if getattr(original, "sqlstate", None) == INSUFFICIENT_PRIVILEGE:  # a role without the grant: waiting won't help
        return DatabaseUnavailable(f"cannot write {label} ({message}): {connection_hint(message)}")
    if "readonly database" in message or "read-only" in message:
        return DatabaseRetryable(f"cannot write {label} ({message}): check the file's permissions or --db", message)
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        unreachable = exc.connection_invalidated or any(m in message.lower() for m in UNREACHABLE_MARKERS)
        hint = file_hint(label) if isinstance(original, sqlite3.Error) else connection_hint(message)
        return DatabaseRetryable(
            f"cannot use database {label} ({message}): {hint}",
            message,
            unavailable=unreachable,
            state=fault_state(message),
        )
    return exc
