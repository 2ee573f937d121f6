"""Maintained baseline flags and survival blocks (revision 0005): whatever runs are written, resumed and
reopened, the flags the write path stores, the SQL definition's and the scan's of ``audit baselines`` are the
same, and so are the stored survival blocks and the SQL's, on SQLite and PostgreSQL; ``db check`` finds a
tampered one and repairs it; the dashboard's flags are read from the table."""

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from typer.testing import CliRunner

from tests.helpers import ALL_MATCH, TEMPLATE, low_survivor, tamper, trained
from townlet.audit.baselines import Thresholds
from townlet.audit.reports import baselines_audits, scanned_flags
from townlet.persistence import migrate
from townlet.persistence.blocks import blocks_select
from townlet.persistence.flags import FLAG_COLUMNS, flags_select
from townlet.persistence.reader import TelemetryReader
from townlet.persistence.store import EpisodeMeta, TelemetryStore
from townlet.telemetry.dto import FIELD_NAMES, AgentTelemetrySnapshotV1, AgentTelemetrySnapshotV2
from townlet_cli.app import app

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

#: One agent row's (stage, baseline, survival): few values, so that stages repeat, baselines move inside a
#: stage, jurors disagree and survival falls under half the baseline often enough to make streaks.
agent_rows = st.tuples(
    st.sampled_from([1, 2]), st.sampled_from([50.0, 80.0, 100.0]), st.sampled_from([10, 45, 60, 200])
)
#: One episode: its agents (a prefix of 0..4 or an odd set), and whether its rows are schema version 1.
episode = st.tuples(
    st.one_of(st.lists(agent_rows, min_size=0, max_size=5), st.lists(agent_rows, min_size=5, max_size=5)),
    st.sampled_from([None, (0, 2, 3), (1, 2), (0, 4)]),
    st.booleans(),
)
episodes = st.lists(episode, min_size=1, max_size=20)


def write(store: TelemetryStore, run: int, number: int, drawn: tuple) -> None:
    rows, only, v1 = drawn
    agents = [i for i in range(len(rows)) if only is None or i in only]
    dicts = [
        {**TEMPLATE, "agent_idx": i, "episode": number, "curriculum_stage": rows[i][0],
         "baseline_survival_steps": rows[i][1], "survival_steps": rows[i][2]}
        for i in agents
    ]  # fmt: skip
    cls = AgentTelemetrySnapshotV1 if v1 else AgentTelemetrySnapshotV2
    names = [k for k in FIELD_NAMES[cls] if k != "episode"]
    if agents == list(range(len(agents))):  # as a trainer hands them on: agent_idx a range (the column-wise paths)
        columns = {k: [d[k] for d in dicts] for k in names} | {"agent_idx": range(len(agents))}
        checked = cls.check_columns(columns, constants={"episode": number})
    else:
        checked = cls.check_dicts([{k: d[k] for k in FIELD_NAMES[cls]} for d in dicts])
    store.write_episode(run, EpisodeMeta(number, 100, 1, 0.5, T0, T0), checked)


def stored(store: TelemetryStore, run: int) -> set[tuple]:
    with store.transaction() as c:
        return set(map(tuple, store.baseline_flag_rows(c, run)))


def defined(store: TelemetryStore, run: int) -> set[tuple]:
    with store.transaction() as c:
        return {tuple(r) for r in c.execute(text(flags_select("e.run_id = :run")), {"run": run})}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=episodes, after=st.integers(0, 9), again=episodes, later=episodes)
def test_the_write_path_the_sql_and_the_scan_raise_the_same_flags(db_url, first, after, again, later):
    """Episodes with varying agents and schema versions; a resume that replaces episodes; a new store (a new
    ``train`` session) that must rebuild each agent's state from the rows."""
    with TelemetryStore.open(db_url, write=True) as store:
        run = store.create_run(run_uuid=uuid.uuid4().hex, seed=0, device="cpu", num_agents=5, config={})
        for number, drawn in enumerate(first, start=1):
            write(store, run, number, drawn)
        after = min(after, len(first))
        store.resume_run(run, after=after)
        for number, drawn in enumerate(again, start=after + 1):
            write(store, run, number, drawn)
    with TelemetryStore.open(db_url, write=True) as store:
        for number, drawn in enumerate(later, start=after + len(again) + 1):
            write(store, run, number, drawn)
        written = stored(store, run)
        assert written == defined(store, run)
        with store.transaction() as c:  # the survival blocks: what the SQL definition sums
            blocks = {
                tuple(r) for r in c.execute(text("SELECT * FROM survival_blocks WHERE run_id = :run"), {"run": run})
            }
            summed = {tuple(r) for r in c.execute(text(blocks_select("r.id = :run")), {"run": run})}
        assert blocks == summed
    with TelemetryReader(db_url) as reader:
        chosen = reader.run(run)
        scan = scanned_flags(baselines_audits(reader, chosen, Thresholds(), summary_bars=1))
        assert reader.baseline_flags(chosen) == scan
    assert len(written) == len(scan)


def test_the_migrations_backfill_is_the_definition(tmp_path):
    """Revision 0005's frozen statement is the one ``flags.py`` builds today."""
    frozen = migrate._module("0005").SELECT_RUN
    assert " ".join(frozen.split()) == " ".join(flags_select("e.run_id = :run").split())


def test_the_flag_columns_are_the_tables(tmp_path):
    db = trained(tmp_path / "t.db", episodes=1, agents=2)
    with TelemetryStore.open(str(db), write=False) as store, store.transaction() as c:
        names = [row[1] for row in c.exec_driver_sql("PRAGMA table_info(baseline_flags)")]
    assert tuple(names) == FLAG_COLUMNS


@pytest.mark.parametrize(
    ("tampering", "named", "rebuilt"),
    [
        (
            "INSERT INTO baseline_flags VALUES (2, 0, 2, 1, 100.0, NULL, 1)",
            "baseline flag differs: run 1 episode 2 agent 0: survival-below-baseline is stored, its agent rows "
            "raise no such flag",
            "rebuilt the baseline flags of run 1 (1 flag)",
        ),
        (
            "UPDATE survival_blocks SET survival_sum = survival_sum + 1",
            "survival block differs: run 1 episodes 1-16 agent group 0: the survival block is missing or differs",
            "rebuilt the survival blocks of run 1 (1 row)",
        ),
    ],
)
def test_db_check_names_a_tampered_flag_or_block_and_repair_rebuilds_it(tmp_path, tampering, named, rebuilt):
    db = low_survivor(tmp_path / "t.db", episodes=17)  # one flag (at episode 5) and one complete block
    runner = CliRunner()
    tamper(db, tampering)
    checked = runner.invoke(app, ["db", "check", "--db", str(db)])
    assert checked.exit_code == 1
    assert named in checked.stdout and "db check --repair" in checked.stdout
    repaired = runner.invoke(app, ["db", "check", "--repair", "--db", str(db)])
    assert repaired.exit_code == 0, repaired.stdout
    assert rebuilt in repaired.stderr
    assert ALL_MATCH in runner.invoke(app, ["db", "check", "--db", str(db)]).stdout


def test_the_dashboards_flags_are_read_from_the_table(tmp_path):
    """A flag only the table holds is served (so the endpoint reads the table, not the rows)."""
    from starlette.testclient import TestClient

    from townlet.web.app import create_app

    db = trained(tmp_path / "t.db", episodes=3, agents=3)
    tamper(db, "INSERT INTO baseline_flags VALUES (2, 1, 2, 1, 100.0, NULL, 1)")
    with TestClient(create_app(str(db)), base_url="http://127.0.0.1") as client:
        flags = client.get("/api/runs/1/flags").json()["flags"]
    assert flags == [{"agent_idx": 1, "flag": "survival-below-baseline", "episode": 2,
                      "detail": "under 0.5 x baseline for 5 episodes from episode 1"}]  # fmt: skip


@pytest.mark.parametrize("reopen", [False, True])
def test_a_streak_that_spans_two_train_sessions_is_flagged_once_where_it_reaches_five(tmp_path, reopen):
    """Agent 0 under half its baseline for 7 episodes: one flag, at the 5th, naming the first."""
    db = str(tmp_path / "t.db")
    low = ([(1, 100.0, 10), (1, 100.0, 200), (1, 100.0, 200)], None, False)
    with TelemetryStore.open(db, write=True) as store:
        run = store.create_run(run_uuid="a" * 32, seed=0, device="cpu", num_agents=3, config={})
        for number in (1, 2, 3):
            write(store, run, number, low)
    store = TelemetryStore.open(db, write=True) if reopen else None
    with store or TelemetryStore.open(db, write=True) as again:
        for number in (4, 5, 6, 7):
            write(again, run, number, low)
        assert stored(again, run) == {(5, 0, 2, 1, 100.0, None, 1)}


def test_the_migrations_blocks_backfill_is_the_definition():
    frozen = migrate._module("0005").BLOCKS_RUN
    assert " ".join(frozen.split()) == " ".join(blocks_select("r.id = :run").split())


#: The heat map as a scan of the agent rows computes it with the block path's buckets.
SCANNED_GRID = """
SELECT (a.agent_idx * :groups) / :agents AS r, ((e.episode - 1) / 16) / :per_column AS c,
       avg(CAST(a.survival_steps AS DOUBLE PRECISION))
FROM episodes e JOIN agent_snapshots a ON a.episode_pk = e.id WHERE e.run_id = :run GROUP BY r, c ORDER BY r, c
"""


@pytest.mark.parametrize(("agents", "episodes", "columns"), [(3, 50, 2), (70, 40, 1000), (130, 37, 2)])
def test_a_long_runs_heat_map_from_its_blocks_is_the_scans(db_url, monkeypatch, agents, episodes, columns):
    """Whole blocks per column, one row per agent group, the open block's episodes from their rows: every cell
    the mean a scan of the same agents and episodes gives, bit for bit (survival sums are integers)."""
    import townlet.persistence.reader as reader_module

    monkeypatch.setattr(reader_module, "RAW_GRID_ROWS", 0)  # every run is "long" here
    with TelemetryStore.open(db_url, write=True) as store:
        run = store.create_run(run_uuid=uuid.uuid4().hex, seed=0, device="cpu", num_agents=agents, config={})
        for number in range(1, episodes + 1):
            rows = [(1, 100.0, (number * 7 + i * 13) % 300) for i in range(agents)]
            write(store, run, number, (rows, None, False))
    with TelemetryReader(db_url) as reader:
        chosen = reader.run(run)
        grid = reader.survival_grid(chosen, columns=columns, rows=64)
        groups = min(64, agents)
        per_column = grid["episodes_per_column"] // 16
        params = {"run": run, "groups": groups, "agents": agents, "per_column": per_column}
        _, scanned = reader._rows.all(SCANNED_GRID, params)
    assert grid["rows"] == groups and grid["columns"] <= columns
    assert [tuple(cell) for cell in grid["cells"]] == [tuple(cell) for cell in scanned]
