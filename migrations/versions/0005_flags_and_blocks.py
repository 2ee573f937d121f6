"""Storage revision under schema version 2: the baseline audit's flags and survival blocks, maintained.

The telemetry DTO does not change (agent rows and envelopes stay schema version 2). This revision adds
``baseline_flags``: one row per flag that ``audit baselines`` raises at its default thresholds (under 0.5 x
baseline for 5 episodes running; a baseline that moves without a stage change; one that disagrees with the
jury of agents 0, 1 and 2), so the dashboard's flags are a read of a small table instead of a scan of every
agent row. From this revision on the write path inserts an episode's flags in the episode's own transaction
(``townlet.persistence.flags``).

The upgrade backfills every existing run in SQL (window functions over each agent's rows in episode order;
no Python loop over rows), one ``INSERT ... SELECT`` per run, inside the migration's one transaction: all or
nothing. After each run it reports progress through ``config.attributes["progress"]`` when the caller passes
a callable ``(episodes done, episodes, agent rows done, "baseline flags")``. The statement is a frozen copy of what
``townlet.persistence.flags`` builds today; a test checks that they agree.

It also adds ``survival_blocks``: survival summed per block of 16 episodes and group of agents (at most 64
groups per run), what the run page's heat map reads for a long run (``townlet.persistence.blocks``),
backfilled the same way (``"survival blocks"`` in the progress) with a frozen copy of ``blocks.py``'s
statement.

Downgrade drops both tables (derived data only: nothing the agent rows do not hold).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: What ``downgrade()`` removes: ``db downgrade`` counts the rows there and asks before dropping them.
DOWNGRADE_DROPS: dict[str, tuple[str, ...] | None] = {"baseline_flags": None, "survival_blocks": None}

COLUMNS = ("episode_pk", "agent_idx", "kind", "stage", "baseline", "other", "since")
#: The flags of run ``:run`` (the default thresholds: below 0.5, streak 5).
SELECT_RUN = """
WITH agent_rows AS (
  SELECT e.id AS episode_pk, e.run_id AS run, e.episode AS episode, a.agent_idx AS agent,
         a.curriculum_stage AS stage, a.baseline_survival_steps AS baseline,
         CASE WHEN a.survival_steps < 0.5 * a.baseline_survival_steps THEN 1 ELSE 0 END AS low
  FROM episodes e JOIN agent_snapshots a ON a.episode_pk = e.id WHERE e.run_id = :run
),
jury AS (
  SELECT episode_pk,
         max(CASE WHEN agent = 0 THEN stage END) AS s0, max(CASE WHEN agent = 0 THEN baseline END) AS b0,
         max(CASE WHEN agent = 1 THEN stage END) AS s1, max(CASE WHEN agent = 1 THEN baseline END) AS b1,
         max(CASE WHEN agent = 2 THEN stage END) AS s2, max(CASE WHEN agent = 2 THEN baseline END) AS b2,
         count(CASE WHEN agent IN (0, 1, 2) THEN 1 END) AS jurors
  FROM agent_rows GROUP BY episode_pk
),
reference AS (
  SELECT episode_pk,
    CASE WHEN jurors < 2 THEN NULL WHEN s0 IS NULL THEN s1
    WHEN jurors = 3 AND NOT (s0 = s1 AND b0 = b1) AND NOT (s0 = s2 AND b0 = b2) AND s1 = s2 AND b1 = b2 THEN s1
    ELSE s0 END AS stage,
    CASE WHEN jurors < 2 THEN NULL WHEN s0 IS NULL THEN b1
    WHEN jurors = 3 AND NOT (s0 = s1 AND b0 = b1) AND NOT (s0 = s2 AND b0 = b2) AND s1 = s2 AND b1 = b2 THEN b1
    ELSE b0 END AS baseline
  FROM jury
),
ordered AS (
  SELECT r.*, lag(stage) OVER w AS prev_stage, lag(baseline) OVER w AS prev_baseline,
         lag(episode, 4) OVER w AS since, sum(1 - low) OVER w AS island
  FROM agent_rows r WINDOW w AS (PARTITION BY run, agent ORDER BY episode)
),
streaks AS (SELECT o.*, sum(low) OVER (PARTITION BY run, agent, island ORDER BY episode) AS streak FROM ordered o)
SELECT episode_pk, agent, 0, stage, baseline, prev_baseline, CAST(NULL AS INTEGER)
FROM streaks WHERE prev_stage = stage AND prev_baseline <> baseline
UNION ALL
SELECT s.episode_pk, s.agent, 1, s.stage, s.baseline, f.baseline, CAST(NULL AS INTEGER)
FROM streaks s JOIN reference f ON f.episode_pk = s.episode_pk WHERE f.stage = s.stage AND f.baseline <> s.baseline
UNION ALL
SELECT episode_pk, agent, 2, stage, baseline, CAST(NULL AS DOUBLE PRECISION), since
FROM streaks WHERE low = 1 AND streak = 5
"""


BLOCK_COLUMNS = ("run_id", "block", "grp", "agents", "survival_sum")
#: The complete survival blocks of run ``:run``.
BLOCKS_RUN = """
SELECT e.run_id, (e.episode - 1) / 16 AS block,
       (a.agent_idx * CASE WHEN r.num_agents < 64 THEN r.num_agents ELSE 64 END) / r.num_agents AS grp,
       count(*), sum(CAST(a.survival_steps AS DOUBLE PRECISION))
FROM runs r JOIN episodes e ON e.run_id = r.id JOIN agent_snapshots a ON a.episode_pk = e.id
WHERE r.id = :run AND r.num_agents > 0 AND (e.episode - 1) / 16 < (
    SELECT max(x.episode) / 16 FROM episodes x WHERE x.run_id = r.id
)
GROUP BY e.run_id, (e.episode - 1) / 16,
         (a.agent_idx * CASE WHEN r.num_agents < 64 THEN r.num_agents ELSE 64 END) / r.num_agents
"""


def blocks_backfill_sql() -> str:
    """The survival block rows of run ``:run``."""
    return f"INSERT INTO survival_blocks ({', '.join(BLOCK_COLUMNS)}) {BLOCKS_RUN}"


def backfill_sql() -> str:
    """The flag rows of run ``:run``."""
    return f"INSERT INTO baseline_flags ({', '.join(COLUMNS)}) {SELECT_RUN}"


def upgrade() -> None:
    op.create_table(
        "baseline_flags",
        sa.Column("episode_pk", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("agent_idx", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("kind", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("stage", sa.Integer(), nullable=False),
        sa.Column("baseline", sa.Double(), nullable=False),
        sa.Column("other", sa.Double(), nullable=True),
        sa.Column("since", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["episode_pk"], ["episodes.id"], name=op.f("fk_baseline_flags_episode_pk_episodes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("episode_pk", "agent_idx", "kind", name=op.f("pk_baseline_flags")),
    )
    bind = op.get_bind()
    progress = context.config.attributes.get("progress")
    total = bind.execute(sa.text("SELECT count(*) FROM episodes")).scalar_one()
    runs = bind.execute(
        sa.text(
            "SELECT e.run_id, count(*), coalesce(sum(r.agents), 0) FROM episodes e "
            "JOIN episode_rollups r ON r.episode_pk = e.id GROUP BY e.run_id ORDER BY e.run_id"
        )
    ).all()
    op.create_table(
        "survival_blocks",
        sa.Column("run_id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("block", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("grp", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("agents", sa.Integer(), nullable=False),
        sa.Column("survival_sum", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_survival_blocks_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "block", "grp", name=op.f("pk_survival_blocks")),
    )
    for what, statement in (("baseline flags", backfill_sql()), ("survival blocks", blocks_backfill_sql())):
        insert = sa.text(statement)
        done_episodes = done_rows = 0
        for run, episodes, agent_rows in runs:
            bind.execute(insert, {"run": run})
            done_episodes, done_rows = done_episodes + episodes, done_rows + agent_rows
            if progress is not None:
                progress(done_episodes, total, done_rows, what)


def downgrade() -> None:
    op.drop_table("survival_blocks")
    op.drop_table("baseline_flags")
