"""Every read path opens its database read-only, on every backend: a write through the reader's own
connection fails. The CLI's read commands (runs, episodes, replay, audit, export) and the dashboard (serve)
all read through ``TelemetryReader``; the dashboard's per-request reader is checked as it builds it."""

import pytest

from tests.resume_reference import config
from townlet.persistence.reader import TelemetryReader
from townlet.training.session import TrainingSession
from townlet.web.app import Dashboard

WRITES = [
    "INSERT INTO runs (run_uuid, started_at, status, seed, device, num_agents, config, code_version, "
    "schema_version) VALUES ('x', '2026-01-01', 'finished', 0, 'cpu', 1, '{}', '0', 2)",
    "UPDATE runs SET status = 'crashed'",
    "DELETE FROM episodes",
    "CREATE TABLE intruder (id INTEGER)",
]


@pytest.fixture
def trained(db_url) -> str:
    TrainingSession(config(1), db=db_url).run()
    return db_url


@pytest.mark.parametrize("sql", WRITES, ids=["insert", "update", "delete", "create"])
@pytest.mark.parametrize("opened_by", ["cli", "serve"])
def test_a_write_through_a_readers_connection_fails(trained, sql, opened_by):
    reader = TelemetryReader(trained) if opened_by == "cli" else Dashboard(trained).reader()
    with reader:
        with pytest.raises(Exception) as refused:
            reader._rows.all(sql, {})
        message = str(refused.value).lower()
        assert "read-only" in message or "readonly" in message, message
    with TelemetryReader(trained) as reader:  # and nothing changed
        assert [run.status for run in reader.runs()] == ["finished"]
