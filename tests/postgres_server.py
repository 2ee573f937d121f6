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


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a base URL (no database name) of a fresh server; stop and delete it afterwards."""
    missing = [b for b in ("initdb", "pg_ctl", "postgres") if shutil.which(b) is None]
    if missing:
        pytest.fail(f"PostgreSQL server binaries not on PATH ({', '.join(missing)}): install postgresql-15")
    run_as = _as_server_user()
    root = Path(tempfile.mkdtemp(prefix="townlet-pg-"))
    root.chmod(0o755)
    data, log = root / "data", root / "server.log"
    data.mkdir()
    if run_as:
        shutil.chown(data, "postgres", "postgres")
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    quiet = {"check": True, "capture_output": True, **run_as}
    try:
        subprocess.run(["initdb", "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync"], **quiet)
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        subprocess.run(["pg_ctl", "-D", str(data), "-o", options, "-l", str(log), "-w", "start"], **quiet)
        try:
            yield f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}"
        finally:
            subprocess.run(["pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop"], **quiet)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        server_log = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        pytest.fail(f"PostgreSQL test server failed: {' '.join(map(str, exc.cmd))}: {detail[0]}\n{server_log}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def new_database(base_url: str) -> str:
    """Create an empty database on the server and return its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conninfo = base_url.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{base_url}/{name}"
