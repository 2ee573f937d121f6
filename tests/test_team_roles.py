"""The README's team set-up, run as written against a real server with passwords: owner, writer, reader.

The SQL comes out of README.md's "Team database" section, so the README cannot drift from what works. Every
command runs as a real process; no password may appear in any output or in what is stored.
"""

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.helpers import townlet
from tests.postgres_server import SUPERUSER, PostgresServer, postgres_instance

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
SECRET = "s3cret-Pw"  # every role's password here: it must never be shown


def readme_sql() -> list[str]:
    """The ```sql blocks of the README's team section, in order."""
    section = README.split("## Team database (PostgreSQL)", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sql\n(.*?)```", section, flags=re.S)


def statements(block: str, database: str) -> list[str]:
    sql = re.sub(r"'change-me-\w+'", f"'{SECRET}'", block).replace("DATABASE townlet", f'DATABASE "{database}"')
    return [s.strip() for s in sql.split(";") if s.strip()]


class Team:
    """The server, its database, and a URL per role (with the password in it)."""

    def __init__(self, server: PostgresServer, database: str) -> None:
        self.server, self.database = server, database

    def url(self, role: str, password: str = SECRET) -> str:
        return f"postgresql+psycopg://townlet_{role}:{password}@127.0.0.1:{self.server.port}/{self.database}"


@pytest.fixture(scope="module")
def team() -> Iterator[Team]:
    with postgres_instance() as server:
        database = "townlet_team"
        admin, owner_block = readme_sql()
        base = f"postgresql://{SUPERUSER}@127.0.0.1:{server.port}"
        with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
            for statement in statements(admin, database):
                connection.execute(statement)
            connection.execute(f"ALTER ROLE {SUPERUSER} PASSWORD '{SECRET}'")
        with psycopg.connect(f"postgresql://townlet_owner@127.0.0.1:{server.port}/{database}") as connection:
            for statement in statements(owner_block, database):
                connection.execute(statement)
        server.require_passwords()
        yield Team(server, database)


def ok(*args: str) -> subprocess.CompletedProcess:
    result = townlet(*args)
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    return result


def refused(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert SECRET not in result.stdout + result.stderr
    for word in words:
        assert word in result.stderr


@pytest.mark.slow
def test_owner_upgrades_writer_trains_reader_reads_and_no_password_shows(team, tmp_path):
    upgraded = ok("db", "upgrade", "--db", team.url("owner"))
    assert "townlet_owner:***@" in upgraded.stderr
    with psycopg.connect(team.url("owner").replace("+psycopg", "")) as connection:  # the README's next step
        connection.execute("GRANT DELETE ON episodes, checkpoints TO townlet_writer")
    writer = team.url("writer")
    trained = ok("train", "--episodes", "3", "--agents", "2", "--device", "cpu", "--db", writer)
    assert "townlet_writer:***@" in trained.stderr
    ok("train", "--resume", "1", "--episodes", "12", "--device", "cpu", "--db", writer)  # prunes checkpoints
    reader = team.url("reader")
    for command in (
        ["runs"],
        ["runs", "--json"],
        ["episodes", "--run", "1", "--json"],
        ["replay", "--run", "1", "--episode", "2", "--json"],
        ["audit", "baselines", "--run", "1", "--json"],
        ["audit", "rewards", "--run", "1"],
        ["audit", "visits", "--run", "1", "--json"],
        ["export", "--run", "1", "--format", "jsonl"],
        ["db", "current"],
    ):
        ok(*command, "--db", reader)
    refused(
        townlet("train", "--episodes", "1", "--device", "cpu", "--db", reader),
        "permission denied for table runs",
        "townlet_reader:***@",
    )
    refused(
        townlet("db", "downgrade", "0002", "--yes", "--db", writer), "must be owner", "run db commands as the owner"
    )
    with psycopg.connect(team.url("owner").replace("+psycopg", "")) as connection:
        stored = connection.execute("SELECT config::text, device FROM runs").fetchall()
    assert stored and all(SECRET not in text for row in stored for text in row)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        (lambda t: t.url("reader", "wrong-pw"), ["password authentication failed", "check the user and password"]),
        (lambda t: t.url("reader").replace(t.database, "no_such_db"), ["does not exist", "createdb"]),
        (lambda t: t.url("reader").replace(str(t.server.port), "1"), ["Connection refused", "server is running"]),
        (lambda t: t.url("reader").replace(str(t.server.port), "port"), ["is not a database URL"]),
        (lambda t: t.url("reader").replace("postgresql+psycopg", "mysql"), ["SQLite or PostgreSQL, not 'mysql'"]),
        (lambda t: t.url("reader").replace("postgresql+psycopg", "nosuch"), ["not 'nosuch'"]),
        (lambda t: t.url("reader") + "?sslmode=require", ["server does not support SSL"]),  # libpq got it
    ],
    ids=["wrong password", "missing database", "wrong port", "bad port", "mysql", "unknown scheme", "sslmode"],
)
def test_bad_database_urls_are_one_line_naming_the_fix_without_the_password(team, url, words):
    for command in (["runs"], ["train", "--episodes", "1", "--device", "cpu"], ["db", "current"]):
        refused(townlet(*command, "--db", url(team)), *words)


def test_a_database_another_tool_owns_is_refused(team):
    superuser = f"postgresql://{SUPERUSER}:{SECRET}@127.0.0.1:{team.server.port}/postgres"
    with psycopg.connect(superuser, autocommit=True) as connection:
        connection.execute('CREATE DATABASE "other_tool" OWNER townlet_owner')
    other = team.url("owner").replace(team.database, "other_tool")
    with psycopg.connect(other.replace("+psycopg", "")) as connection:
        connection.execute("CREATE TABLE invoices (id int)")
    for command in (["runs"], ["train", "--episodes", "1", "--device", "cpu"]):
        refused(townlet(*command, "--db", other), "is not a townlet database")


def test_libpq_parameters_pass_through_the_url(team):
    plain = ok("db", "current", "--db", team.url("reader")).stdout
    with_parameters = ok("db", "current", "--db", team.url("reader") + "?connect_timeout=5&application_name=analyst")
    assert "application_name=analyst" in with_parameters.stdout  # named as given, and answered the same
    assert with_parameters.stdout.split(": ", 1)[1] == plain.split(": ", 1)[1]
