"""SQLAlchemy 2.x typed tables: runs, episodes, and one typed row per agent per episode.

``agent_snapshots`` has one column per DTO field (audits are SQL); the agent's episode number comes from
``episodes`` through ``episode_pk``. Indexes serve the CLI's queries: the primary key
``(episode_pk, agent_idx)`` finds one episode's agents; ``uq_episodes_run_id_episode`` plus that key finds
one agent across the episodes of a run.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: A run's stored states: ``running`` (a process trains it), ``finished`` (every requested episode written),
#: ``interrupted`` (stopped by Ctrl-C), ``crashed`` (stopped by a failure), ``stale`` (its process died without
#: saying so, e.g. kill -9; see ``townlet.persistence.run_states``).
RUN_STATUSES = ("running", "finished", "interrupted", "crashed", "stale")
STATUS_CHECK = "status IN ({})".format(", ".join(f"'{s}'" for s in RUN_STATUSES))


#: Longest run name and tag stored (revision 0007); ``townlet.persistence.run_labels`` refuses longer ones.
NAME_LENGTH = 120
TAG_LENGTH = 64


class Base(DeclarativeBase):
    """Declarative base whose metadata names every constraint (so Alembic can alter them on SQLite too)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class RunRow(Base):
    """One ``train`` invocation (and its resumptions); ``name`` is the researcher's (``train --name``)."""

    __tablename__ = "runs"
    __table_args__ = (CheckConstraint(STATUS_CHECK, name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_uuid: Mapped[str] = mapped_column(String(32), unique=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))
    seed: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(32))
    num_agents: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    code_version: Mapped[str] = mapped_column(String(32))
    schema_version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))


class EpisodeRow(Base):
    """One finished episode of a run; written in the same transaction as all its agents."""

    __tablename__ = "episodes"
    __table_args__ = (UniqueConstraint("run_id", "episode"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    episode: Mapped[int] = mapped_column(Integer)
    steps: Mapped[int] = mapped_column(Integer)
    curriculum_stage: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[float] = mapped_column(Double)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AgentSnapshotRow(Base):
    """One agent's DTO fields at the end of one episode, one typed column each.

    The V2 columns (visits, action entropy) are NULL in rows written under schema version 1.
    """

    __tablename__ = "agent_snapshots"
    __table_args__ = ({"sqlite_with_rowid": False},)

    episode_pk: Mapped[int] = mapped_column(ForeignKey("episodes.id", ondelete="CASCADE"), primary_key=True)
    agent_idx: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    schema_version: Mapped[int] = mapped_column(Integer)
    survival_steps: Mapped[int] = mapped_column(Integer)
    baseline_survival_steps: Mapped[float] = mapped_column(Double)
    episode_reward: Mapped[float] = mapped_column(Double)
    epsilon: Mapped[float] = mapped_column(Double)
    curriculum_stage: Mapped[int] = mapped_column(Integer)
    death_cause: Mapped[str] = mapped_column(String(16))
    meter_energy: Mapped[float] = mapped_column(Double)
    meter_hygiene: Mapped[float] = mapped_column(Double)
    meter_satiation: Mapped[float] = mapped_column(Double)
    meter_money: Mapped[float] = mapped_column(Double)
    visits_bed: Mapped[int | None] = mapped_column(Integer)
    visits_shower: Mapped[int | None] = mapped_column(Integer)
    visits_fridge: Mapped[int | None] = mapped_column(Integer)
    visits_job: Mapped[int | None] = mapped_column(Integer)
    action_entropy: Mapped[float | None] = mapped_column(Double)


class CheckpointRow(Base):
    """One learner checkpoint of a run, taken after ``episode``: the ``torch.save`` bytes of the whole learner.

    Written in the same transaction as its episode, so it is whole or absent; ``format_version`` says how to
    read ``blob`` (``townlet.training.checkpoint``); ``device`` is the device type it was trained on.
    """

    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("run_id", "episode"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    episode: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    format_version: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(32))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    blob: Mapped[bytes] = mapped_column(LargeBinary)


#: DTO fields stored per agent row, in table column order (``episode`` lives in ``episodes``).
AGENT_FIELDS: tuple[str, ...] = tuple(
    c.name for c in AgentSnapshotRow.__table__.columns if c.name not in ("episode_pk", "schema_version")
)

#: The agent fields ``episode_rollups`` aggregates: every number an agent row holds (not its index or stage).
ROLLUP_FIELDS: tuple[str, ...] = tuple(
    name for name in AGENT_FIELDS if name not in ("agent_idx", "curriculum_stage", "death_cause")
)
#: What each rolled-up field keeps per episode: enough for the mean, the extremes and the standard deviation.
ROLLUP_AGGREGATES: tuple[str, ...] = ("sum", "min", "max", "sumsq")
#: The death causes ``episode_rollups`` counts, one column each (``deaths_<cause>``), in column order.
ROLLUP_DEATHS: tuple[str, ...] = ("energy", "hygiene", "satiation", "timeout")


def _rollup_column(field: str, aggregate: str) -> Column[Any]:
    """Sums are doubles (added as ``avg()`` adds, never overflowing); extremes keep the field's own type."""
    integer = isinstance(AgentSnapshotRow.__table__.c[field].type, Integer)
    kind = Integer if integer and aggregate in ("min", "max") else Double
    return Column(f"{field}_{aggregate}", kind, nullable=True)


#: One row per episode (revision 0004): its agent rows aggregated by the database in the episode's own
#: transaction (``townlet.persistence.rollups``), so what lists and charts episodes reads one row per episode.
#: ``agents`` is the episode's agent-row count; a field's aggregates are NULL when its rows lack the field (V1).
EPISODE_ROLLUPS = Table(
    "episode_rollups",
    Base.metadata,
    Column("episode_pk", ForeignKey("episodes.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    Column("agents", Integer, nullable=False),
    *(_rollup_column(field, aggregate) for field in ROLLUP_FIELDS for aggregate in ROLLUP_AGGREGATES),
    *(Column(f"deaths_{cause}", Integer, nullable=False) for cause in ROLLUP_DEATHS),
)

#: The baseline audit's flags at the default thresholds (revision 0005), maintained as episodes are written
#: (``townlet.persistence.flags``): one row per flag, usually none. ``kind`` indexes ``audit.baselines.FLAGS``.
BASELINE_FLAGS = Table(
    "baseline_flags",
    Base.metadata,
    Column("episode_pk", ForeignKey("episodes.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    Column("agent_idx", Integer, primary_key=True, autoincrement=False),
    Column("kind", Integer, primary_key=True, autoincrement=False),
    Column("stage", Integer, nullable=False),
    Column("baseline", Double, nullable=False),
    Column("other", Double, nullable=True),
    Column("since", Integer, nullable=True),
)

#: Survival summed per block of 16 episodes and group of agents (revision 0005; ``townlet.persistence.blocks``):
#: what the heat map of a long run reads. ``agents`` is how many agent rows ``survival_sum`` adds up.
SURVIVAL_BLOCKS = Table(
    "survival_blocks",
    Base.metadata,
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    Column("block", Integer, primary_key=True, autoincrement=False),
    Column("grp", Integer, primary_key=True, autoincrement=False),
    Column("agents", Integer, nullable=False),
    Column("survival_sum", Double, nullable=False),
)

#: One row per recorded episode (revision 0006; ``townlet.telemetry.recording``): its header (the world, the
#: stage, why it was recorded, which agents) as JSON, and totals for listings; written in the episode's own
#: transaction with one ``recording_agents`` row per recorded agent.
RECORDINGS = Table(
    "recordings",
    Base.metadata,
    Column("episode_pk", ForeignKey("episodes.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    Column("format", Integer, nullable=False),
    Column("reasons", String(64), nullable=False),
    Column("agents", Integer, nullable=False),
    Column("steps", Integer, nullable=False),
    Column("agent_steps", BigInteger, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("header", JSON, nullable=False),
)

#: One recorded agent's steps of one episode: its blob (``townlet.telemetry.recording_codec``) decodes alone.
RECORDING_AGENTS = Table(
    "recording_agents",
    Base.metadata,
    Column(
        "episode_pk", ForeignKey("recordings.episode_pk", ondelete="CASCADE"), primary_key=True, autoincrement=False
    ),
    Column("agent_idx", Integer, primary_key=True, autoincrement=False),
    Column("steps", Integer, nullable=False),
    Column("blob", LargeBinary, nullable=False),
)

#: A run's tags (revision 0007): ``train --tag``, ``runs tag``; the index finds a tag's runs.
RUN_TAGS = Table(
    "run_tags",
    Base.metadata,
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    Column("tag", String(TAG_LENGTH), primary_key=True, index=True),
)
