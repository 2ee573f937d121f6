"""Schema version 1: runs, episodes, and one typed row per agent per episode (AgentTelemetrySnapshotV1).

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: What ``downgrade()`` removes (table -> columns; None for a whole table): ``db downgrade`` counts the rows
#: that hold data there and asks before dropping them. A test checks it against what the downgrade really drops.
DOWNGRADE_DROPS: dict[str, tuple[str, ...] | None] = {"agent_snapshots": None, "episodes": None, "runs": None}


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_uuid", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(length=32), nullable=False),
        sa.Column("num_agents", sa.Integer(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("code_version", sa.String(length=32), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.CheckConstraint("status IN ('running', 'finished', 'crashed')", name=op.f("ck_runs_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
        sa.UniqueConstraint("run_uuid", name=op.f("uq_runs_run_uuid")),
    )
    op.create_table(
        "episodes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("episode", sa.Integer(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("curriculum_stage", sa.Integer(), nullable=False),
        sa.Column("duration_s", sa.Double(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_episodes_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_episodes")),
        sa.UniqueConstraint("run_id", "episode", name=op.f("uq_episodes_run_id_episode")),
    )
    op.create_table(
        "agent_snapshots",
        sa.Column("episode_pk", sa.Integer(), nullable=False),
        sa.Column("agent_idx", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("survival_steps", sa.Integer(), nullable=False),
        sa.Column("baseline_survival_steps", sa.Double(), nullable=False),
        sa.Column("episode_reward", sa.Double(), nullable=False),
        sa.Column("epsilon", sa.Double(), nullable=False),
        sa.Column("curriculum_stage", sa.Integer(), nullable=False),
        sa.Column("death_cause", sa.String(length=16), nullable=False),
        sa.Column("meter_energy", sa.Double(), nullable=False),
        sa.Column("meter_hygiene", sa.Double(), nullable=False),
        sa.Column("meter_satiation", sa.Double(), nullable=False),
        sa.Column("meter_money", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["episode_pk"], ["episodes.id"], name=op.f("fk_agent_snapshots_episode_pk_episodes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("episode_pk", "agent_idx", name=op.f("pk_agent_snapshots")),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("agent_snapshots")
    op.drop_table("episodes")
    op.drop_table("runs")
