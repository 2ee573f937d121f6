"""Storage revision under schema version 2: learner checkpoints and honest run states.

The telemetry DTO does not change (agent rows and envelopes stay schema version 2); this revision changes
what the database keeps beside the telemetry:

- ``checkpoints``: one row per learner checkpoint (run, episode, created_at, format_version, device,
  size_bytes, blob), BLOB on SQLite and bytea on PostgreSQL, unique per ``(run_id, episode)`` and deleted
  with its run. A checkpoint is written in its episode's transaction, so it is whole or absent.
- ``runs.status`` may also be ``interrupted`` (stopped by Ctrl-C) and ``stale`` (its process died without
  saying so). SQLite cannot alter a CHECK constraint, so batch mode rebuilds ``runs``; that needs foreign
  keys off (else dropping the old table would cascade-delete every episode), which townlet's migration
  connection guarantees and this revision checks before it touches anything.

Downgrade drops the checkpoints (``db downgrade`` says how many first) and maps the new states back to what
revision 0002 wrote for them: ``interrupted`` -> ``crashed``, ``stale`` -> ``running``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: What ``downgrade()`` removes (table -> columns; None for a whole table): ``db downgrade`` counts the rows
#: that hold data there and asks before dropping them. A test checks it against what the downgrade really drops.
DOWNGRADE_DROPS: dict[str, tuple[str, ...] | None] = {"checkpoints": None}
#: Values ``downgrade()`` rewrites: (table, column) -> {new value: the older revision's value}.
DOWNGRADE_RELABELS: dict[tuple[str, str], dict[str, str]] = {
    ("runs", "status"): {"interrupted": "crashed", "stale": "running"}
}

OLD_STATUSES = "status IN ('running', 'finished', 'crashed')"
NEW_STATUSES = "status IN ('running', 'finished', 'interrupted', 'crashed', 'stale')"


def _require_foreign_keys_off() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError(
            "revision 0003 rebuilds the runs table, which with SQLite foreign keys on would delete every "
            "episode: run it through `townlet-telemetry db upgrade` or the shipped alembic env.py"
        )


def _status_check(sql: str) -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint(op.f("ck_runs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_runs_status"), sql)


def upgrade() -> None:
    _require_foreign_keys_off()
    _status_check(NEW_STATUSES)
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("episode", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("format_version", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(length=32), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("blob", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_checkpoints_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
        sa.UniqueConstraint("run_id", "episode", name=op.f("uq_checkpoints_run_id_episode")),
    )


def downgrade() -> None:
    _require_foreign_keys_off()
    op.drop_table("checkpoints")
    for (table, column), mapping in DOWNGRADE_RELABELS.items():
        for new, old in mapping.items():
            op.execute(
                sa.text(f"UPDATE {table} SET {column} = :old WHERE {column} = :new").bindparams(old=old, new=new)
            )
    _status_check(OLD_STATUSES)
