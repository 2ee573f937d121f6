"""Storage revision under schema version 2: run names and tags (``train --name``, ``--tag``, ``runs tag``).

The telemetry DTO does not change. This revision adds ``runs.name`` (NULL for a run nobody named: every run
of an older database) and ``run_tags`` (one row per tag of a run, deleted with its run). Names and tags
describe a run for the researcher (``runs --tag``, ``compare --tag``); grouping runs for ``compare`` never
depends on them unless asked (``--group-by tag``).

Downgrade drops both; ``db downgrade`` says how many names and tags that drops and asks first.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Longest run name and tag the columns hold (``townlet.persistence.run_labels`` checks them first).
NAME_LENGTH = 120
TAG_LENGTH = 64

#: What ``downgrade()`` removes: ``db downgrade`` counts the rows there and asks before dropping them.
DOWNGRADE_DROPS: dict[str, tuple[str, ...] | None] = {"run_tags": None, "runs": ("name",)}


def upgrade() -> None:
    op.add_column("runs", sa.Column("name", sa.String(length=NAME_LENGTH), nullable=True))
    op.create_table(
        "run_tags",
        sa.Column("run_id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("tag", sa.String(length=TAG_LENGTH), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_tags_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "tag", name=op.f("pk_run_tags")),
    )
    op.create_index(op.f("ix_run_tags_tag"), "run_tags", ["tag"])


def downgrade() -> None:
    op.drop_index(op.f("ix_run_tags_tag"), table_name="run_tags")
    op.drop_table("run_tags")
    op.drop_column("runs", "name")
