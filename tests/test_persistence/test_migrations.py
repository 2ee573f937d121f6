"""Migrations: pytest-alembic's built-in checks on SQLite and PostgreSQL, and the schema_version map."""

from pathlib import Path

import pytest
from pytest_alembic.tests import (  # noqa: F401  (collected as tests here)
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)

from townlet.persistence import migrate, revisions
from townlet.persistence.engine import database_url, make_engine
from townlet.telemetry.dto import DTO_BY_VERSION, SCHEMA_VERSION


@pytest.fixture
def alembic_config() -> dict[str, str]:
    return {"script_location": str(migrate.SCRIPT_LOCATION)}


@pytest.fixture
def alembic_engine(db_url: str):
    engine = make_engine(database_url(db_url), read_only=False)
    yield engine
    engine.dispose()


def test_every_revision_has_a_schema_version_and_back():
    shipped = migrate.script_revisions()
    # Oldest first on both sides: the read path knows the order of revisions without Alembic.
    assert list(revisions.SCHEMA_BY_REVISION) == shipped == list(revisions.ADDED_BY_REVISION)
    schemas = list(revisions.SCHEMA_BY_REVISION.values())
    assert schemas == sorted(schemas)  # a revision never goes back to an older schema
    assert set(schemas) == set(DTO_BY_VERSION)  # every DTO version has a revision that creates it
    assert shipped[-1] == revisions.HEAD_REVISION
    assert revisions.SCHEMA_BY_REVISION[revisions.HEAD_REVISION] == SCHEMA_VERSION


def test_revision_0003_is_a_storage_revision_under_schema_2():
    assert revisions.SCHEMA_BY_REVISION["0003"] == revisions.SCHEMA_BY_REVISION["0002"] == 2
    assert revisions.describe_revision("0003") == "revision 0003 (schema 2)"


def test_migrations_ship_inside_the_package():
    assert (migrate.SCRIPT_LOCATION / "env.py").is_file()
    assert (migrate.SCRIPT_LOCATION / "script.py.mako").is_file()
    assert Path(__file__).resolve().parents[2] / "migrations" == migrate.SCRIPT_LOCATION
