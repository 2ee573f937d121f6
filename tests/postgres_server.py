"""A real PostgreSQL 15 server for the tests: initdb + pg_ctl in a temp dir on 127.0.0.1, stopped afterwards.

No skip: when the binaries are missing the PostgreSQL lane fails loudly (CI installs them, see .ci/run).
"""

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from tests.helpers import free_port

SUPERUSER = "townlet"


def _as_server_user() -> dict[str, object]:
    """initdb and postgres refuse to run as root: run them as the 'postgres' system user there."""
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root and there is no 'postgres' user to run the test server as: install postgresql")
    return {"user": "postgres", "group": "postgres"}


class PostgresServer:
    """Owns one throwaway server's data directory and port; ``restart``/``stop``/``start`` act on it like an
    operator with ``pg_ctl`` would (a test of a trainer riding out a server restart)."""

    def __init__(self, root: Path, port: int, run_as: dict[str, object]) -> None:
        self.root, self.port, self.run_as = root, port, run_as
        self.data, self.log = root / "data", root / "server.log"
        self.url = f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}"

    def _pg_ctl(self, *args: str) -> None:
        pg_ctl = [str(server_binary("pg_ctl")), "-D", str(self.data)]
        subprocess.run([*pg_ctl, *args], check=True, capture_output=True, **self.run_as)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        self._pg_ctl("-o", options, "-l", str(self.log), "-w", "start")

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "-w", "stop")

    def require_passwords(self) -> None:
        """From now on TCP connections need a password (scram-sha-256); set the roles' passwords first."""
        hba = self.data / "pg_hba.conf"
        lines = [
            line.replace("trust", "scram-sha-256") if line.startswith("host") else line
            for line in hba.read_text().splitlines()
        ]
        hba.write_text("\n".join(lines) + "\n")
        self._pg_ctl("reload")

    def restart(self) -> None:
        """``pg_ctl restart``, as stop + start: a bare ``restart`` would hand the server pg_ctl's stdout."""
        self.stop()
        self.start()


def server_binary(name: str) -> str | None:
    """A PostgreSQL server binary: on PATH, else where Debian's packages put it (the newest version there)."""
    found = shutil.which(name)
    if found is not None:
        return found
    debian = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    return str(debian[-1]) if debian else None


@contextmanager
def postgres_instance() -> Iterator[PostgresServer]:
    """A fresh server on 127.0.0.1, stopped and deleted afterwards."""
    missing = [b for b in ("initdb", "pg_ctl", "postgres") if server_binary(b) is None]
    if missing:
        pytest.fail(f"PostgreSQL server binaries not found ({', '.join(missing)}): run scripts/test-machine.sh")
    run_as = _as_server_user()
    root = Path(tempfile.mkdtemp(prefix="townlet-pg-"))
    root.chmod(0o755)
    server = PostgresServer(root, free_port(), run_as)
    server.data.mkdir()
    if run_as:
        shutil.chown(server.data, "postgres", "postgres")
        shutil.chown(root, "postgres", "postgres")
    try:
        subprocess.run(
            [str(server_binary("initdb")), "-D", str(server.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
             "--no-sync"],
            check=True, capture_output=True, **run_as,
        )  # fmt: skip
        server.start()
        try:
            yield server
        finally:
            if (server.data / "postmaster.pid").exists():
                server.stop()
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        server_log = server.log.read_text(errors="replace")[-2000:] if server.log.exists() else ""
        pytest.fail(f"PostgreSQL test server failed: {' '.join(map(str, exc.cmd))}: {detail[0]}\n{server_log}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a base URL (no database name) of a fresh server; stop and delete it afterwards."""
    with postgres_instance() as server:
        yield server.url


def new_database(base_url: str) -> str:
    """Create an empty database on the server and return its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conninfo = base_url.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{base_url}/{name}"
