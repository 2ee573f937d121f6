"""Shared fixtures: the device lane (cpu always, cuda where present) and the database backends."""

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.postgres_server import new_database, postgres_server

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA lane: no GPU here")),
]


FIXTURES = Path(__file__).parent / "fixtures"


def _fixture_files() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(FIXTURES.iterdir())}


@pytest.fixture(scope="session", autouse=True)
def fixtures_stay_untouched() -> Iterator[None]:
    """The committed fixtures are written once by old code: no test may change them or leave a file beside them."""
    before = _fixture_files()
    yield
    assert _fixture_files() == before, "a test changed tests/fixtures/ (or left a -wal/-shm file there)"


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.param)


@pytest.fixture(scope="session")
def postgres_base_url() -> Iterator[str]:
    """One real PostgreSQL server for the whole test run."""
    with postgres_server() as url:
        yield url


BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend: a new SQLite file, or a new database on the test server."""
    if request.param == "sqlite":
        return str(tmp_path / "townlet.db")
    return new_database(request.getfixturevalue("postgres_base_url"))


@pytest.fixture
def processes():
    """Training processes started by a test; killed if the test fails before they end."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.fixture(scope="session")
def straight_db(tmp_path_factory) -> str:
    """The exact-resume reference: 30 episodes of ``resume_reference.config`` in one session, on SQLite."""
    from tests.resume_reference import config
    from townlet.training.session import TrainingSession

    db = str(tmp_path_factory.mktemp("straight") / "t.db")
    result = TrainingSession(config(30), db=db).run()
    assert result.status == "finished"
    return db


@pytest.fixture(scope="session")
def straight(straight_db) -> list[tuple]:
    """Every stored telemetry field of the reference run (``resume_reference.telemetry``)."""
    from tests.resume_reference import telemetry

    return telemetry(straight_db)


@pytest.fixture(scope="session")
def straight_recordings(straight_db) -> list[tuple]:
    """The reference run's recordings (``resume_reference.recorded``)."""
    from tests.resume_reference import recorded

    return recorded(straight_db)
