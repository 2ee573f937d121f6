"""Storage revision under schema version 2: episode recordings (every step of the recorded agents).

The telemetry DTO does not change: agent rows, envelopes and the live stream's episode messages stay schema
version 2 (the recording is its own versioned DTO, ``townlet.telemetry.recording``, with its own format number).
This revision adds ``recordings`` (one row per recorded episode: its header as JSON, why it was recorded, how
many agents, steps and bytes) and ``recording_agents`` (one compressed blob per recorded agent, which decodes
alone: ``townlet.telemetry.recording_codec``). Both are written in the episode's own transaction from this
revision on. Older databases have no recordings: nothing is backfilled (the steps were never kept).

Downgrade drops both tables; ``db downgrade`` says how many recordings that drops and asks first.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: What ``downgrade()`` removes: ``db downgrade`` counts the rows there and asks before dropping them.
DOWNGRADE_DROPS: dict[str, tuple[str, ...] | None] = {"recordings": None, "recording_agents": None}


def upgrade() -> None:
    op.create_table(
        "recordings",
        sa.Column("episode_pk", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("format", sa.Integer(), nullable=False),
        sa.Column("reasons", sa.String(length=64), nullable=False),
        sa.Column("agents", sa.Integer(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("agent_steps", sa.BigInteger(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("header", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["episode_pk"], ["episodes.id"], name=op.f("fk_recordings_episode_pk_episodes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("episode_pk", name=op.f("pk_recordings")),
    )
    op.create_table(
        "recording_agents",
        sa.Column("episode_pk", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("agent_idx", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("blob", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["episode_pk"],
            ["recordings.episode_pk"],
            name=op.f("fk_recording_agents_episode_pk_recordings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("episode_pk", "agent_idx", name=op.f("pk_recording_agents")),
    )


def downgrade() -> None:
    op.drop_table("recording_agents")
    op.drop_table("recordings")
