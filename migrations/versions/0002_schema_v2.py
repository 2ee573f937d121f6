"""Schema version 2: affordance visit counters and action entropy (AgentTelemetrySnapshotV2).

Five nullable columns on ``agent_snapshots``: ``visits_bed``, ``visits_shower``, ``visits_fridge``,
``visits_job`` (integers) and ``action_entropy`` (double). Columns rather than a child table keyed by
affordance name, because the affordances are a fixed set of the world (like the meters, which are columns
too): an audit stays one indexed read of one row per agent per episode (``audit visits --agent I`` is the
same primary-key lookup per episode as ``audit baselines``), no join and no pivot, and the DTO stays flat.
Rows written under version 1 keep ``schema_version`` 1 and NULL in the new columns, so they still rebuild
as ``AgentTelemetrySnapshotV1`` and replay byte-identically.

``ADD COLUMN`` is a metadata change on SQLite and PostgreSQL: no table rewrite, whatever the row count.
Downgrade drops the five columns again (SQLite >= 3.35 drops a column in place) and relabels rows written
under version 2 as version 1, which they then are: their V1 fields are untouched.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VISIT_COLUMNS = ("visits_bed", "visits_shower", "visits_fridge", "visits_job")

#: What ``downgrade()`` removes (table -> columns; None for a whole table): ``db downgrade`` counts the rows
#: that hold data there and asks before dropping them. A test checks it against what the downgrade really drops.
DOWNGRADE_DROPS: dict[str, tuple[str, ...] | None] = {"agent_snapshots": (*VISIT_COLUMNS, "action_entropy")}


def upgrade() -> None:
    for name in VISIT_COLUMNS:
        op.add_column("agent_snapshots", sa.Column(name, sa.Integer(), nullable=True))
    op.add_column("agent_snapshots", sa.Column("action_entropy", sa.Double(), nullable=True))


def downgrade() -> None:
    op.execute("UPDATE agent_snapshots SET schema_version = 1 WHERE schema_version = 2")
    op.execute("UPDATE runs SET schema_version = 1 WHERE schema_version = 2")
    for name in (*VISIT_COLUMNS, "action_entropy"):
        op.drop_column("agent_snapshots", name)
