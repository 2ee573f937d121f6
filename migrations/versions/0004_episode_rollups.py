"""Storage revision under schema version 2: per-episode rollups.

The telemetry DTO does not change (agent rows and envelopes stay schema version 2). This revision adds
``episode_rollups``: one row per episode, its agent rows aggregated (the agent count; sum, min, max and sum of
squares of every numeric field; the deaths by cause), so that listing or charting a run's episodes reads one
row per episode instead of every agent row. From this revision on the write path inserts an episode's rollup
in the episode's own transaction (``townlet.persistence.rollups``).

The upgrade backfills every existing episode in SQL, one ``INSERT ... SELECT`` per run and span of
``BACKFILL_EPISODES`` episodes (no Python loop over rows), inside the migration's one transaction: all or
nothing. After each it reports progress through ``config.attributes["progress"]`` when the caller passes a
callable ``(episodes done, episodes, agent rows done)``.
The statement is a frozen copy of what ``townlet.persistence.rollups`` builds today; a test checks that they
agree.

Downgrade drops the table (derived data only: nothing the agent rows do not hold).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: What ``downgrade()`` removes: ``db downgrade`` counts the rows there and asks before dropping them.
DOWNGRADE_DROPS: dict[str, tuple[str, ...] | None] = {"episode_rollups": None}

INTEGER_FIELDS = ("survival_steps", "visits_bed", "visits_shower", "visits_fridge", "visits_job")
FIELDS = (
    "survival_steps",
    "baseline_survival_steps",
    "episode_reward",
    "epsilon",
    "meter_energy",
    "meter_hygiene",
    "meter_satiation",
    "meter_money",
    "visits_bed",
    "visits_shower",
    "visits_fridge",
    "visits_job",
    "action_entropy",
)
AGGREGATES = ("sum", "min", "max", "sumsq")
DEATHS = ("energy", "hygiene", "satiation", "timeout")
#: Episodes backfilled per statement: progress is reported after each.
BACKFILL_EPISODES = 500
EXPRESSIONS = {
    "sum": "sum(CAST(a.{f} AS DOUBLE PRECISION))",
    "min": "min(a.{f})",
    "max": "max(a.{f})",
    "sumsq": "sum(CASE WHEN abs(a.{f}) < 1e-150 THEN 0.0 ELSE CAST(a.{f} AS DOUBLE PRECISION) * a.{f} END)",
}


def _columns() -> list[sa.Column]:
    columns = [
        sa.Column("episode_pk", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("agents", sa.Integer(), nullable=False),
    ]
    for field in FIELDS:
        for aggregate in AGGREGATES:
            integer = field in INTEGER_FIELDS and aggregate in ("min", "max")
            kind: sa.types.TypeEngine = sa.Integer() if integer else sa.Double()
            columns.append(sa.Column(f"{field}_{aggregate}", kind, nullable=True))
    columns += [sa.Column(f"deaths_{cause}", sa.Integer(), nullable=False) for cause in DEATHS]
    return columns


def backfill_sql() -> str:
    """The rollup rows of run ``:run``'s episodes ``:first`` to ``:last``."""
    names = [
        "episode_pk",
        "agents",
        *(f"{f}_{a}" for f in FIELDS for a in AGGREGATES),
        *(f"deaths_{c}" for c in DEATHS),
    ]
    values = ["count(a.agent_idx)"]
    values += [EXPRESSIONS[a].format(f=f) for f in FIELDS for a in AGGREGATES]
    values += [f"count(CASE WHEN a.death_cause = '{c}' THEN 1 END)" for c in DEATHS]
    return (
        f"INSERT INTO episode_rollups ({', '.join(names)}) SELECT e.id, {', '.join(values)} FROM episodes e "
        "LEFT JOIN agent_snapshots a ON a.episode_pk = e.id "
        "WHERE e.run_id = :run AND e.episode BETWEEN :first AND :last GROUP BY e.id"
    )


def upgrade() -> None:
    op.create_table(
        "episode_rollups",
        *_columns(),
        sa.ForeignKeyConstraint(
            ["episode_pk"], ["episodes.id"], name=op.f("fk_episode_rollups_episode_pk_episodes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("episode_pk", name=op.f("pk_episode_rollups")),
    )
    bind = op.get_bind()
    progress = context.config.attributes.get("progress")
    total = bind.execute(sa.text("SELECT count(*) FROM episodes")).scalar_one()
    spans = bind.execute(
        sa.text("SELECT run_id, min(episode), max(episode) FROM episodes GROUP BY run_id ORDER BY run_id")
    )
    insert, rows = (
        sa.text(backfill_sql()),
        sa.text(
            "SELECT count(*), coalesce(sum(r.agents), 0) FROM episode_rollups r JOIN episodes e ON e.id = r.episode_pk "
            "WHERE e.run_id = :run AND e.episode BETWEEN :first AND :last"
        ),
    )
    done_episodes = done_rows = 0
    for run, first, last in spans.all():
        for start in range(first, last + 1, BACKFILL_EPISODES):
            span = {"run": run, "first": start, "last": min(last, start + BACKFILL_EPISODES - 1)}
            bind.execute(insert, span)
            episodes, agent_rows = bind.execute(rows, span).one()
            done_episodes, done_rows = done_episodes + episodes, done_rows + agent_rows
            if progress is not None:
                progress(done_episodes, total, done_rows)


def downgrade() -> None:
    op.drop_table("episode_rollups")
