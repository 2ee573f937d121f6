"""Packaging: the wheel installs ``townlet`` and ``townlet_cli`` (never a bare ``cli``) and the entry point works."""

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from townlet.persistence.revisions import HEAD_REVISION, SCHEMA_BY_REVISION
from townlet.telemetry.dto import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    # Build from a copy: an in-tree build would leave build/ in the checkout.
    source = tmp_path_factory.mktemp("source") / "townlet"
    shutil.copytree(
        ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__", "*.db*")
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        cwd=tmp_path_factory.mktemp("build-cwd"),
    )
    return target


@pytest.mark.slow
def test_cli_folder_installs_under_a_project_specific_name(installed):
    assert (installed / "townlet_cli" / "app.py").is_file()
    assert (installed / "townlet" / "population" / "runtime_registry.py").is_file()
    assert not (installed / "cli").exists()


@pytest.mark.slow
def test_every_package_of_the_checkout_is_installed(installed):
    # The venv's editable install would mask a package missing from the wheel, so compare the trees.
    def packages(root: Path, top: str) -> set[str]:
        return {str(p.parent.relative_to(root)) for p in (root / top).rglob("__init__.py")}

    assert packages(ROOT, "townlet") <= packages(installed, "townlet")
    assert {p.replace("migrations", "townlet_migrations", 1) for p in packages(ROOT, "migrations")} <= packages(
        installed, "townlet_migrations"
    )
    for version in (ROOT / "migrations" / "versions").glob("*.py"):
        assert (installed / "townlet_migrations" / "versions" / version.name).is_file()


@pytest.mark.slow
def test_entry_point_works_from_outside_the_checkout(installed, tmp_path):
    script = installed / "bin" / "townlet-telemetry"
    env = {**os.environ, "PYTHONPATH": str(installed)}
    result = subprocess.run(
        [sys.executable, str(script), "train", "--episodes", "1", "--agents", "2", "--device", "cpu"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "training summary" in result.stderr
    where = subprocess.run(
        [sys.executable, "-c", "import townlet_cli, townlet; print(townlet_cli.__file__, townlet.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(ROOT) not in where
    assert str(installed) in where


@pytest.mark.slow
def test_installed_cli_upgrades_a_database_with_no_checkout(installed, tmp_path):
    assert (installed / "townlet_migrations" / "versions" / "0001_schema_v1.py").is_file()
    assert (installed / "townlet_migrations" / "script.py.mako").is_file()
    script = installed / "bin" / "townlet-telemetry"
    env = {**os.environ, "PYTHONPATH": str(installed)}
    env.pop("TOWNLET_DB", None)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(script), *args], cwd=elsewhere, env=env, capture_output=True, text=True, check=False
        )

    upgraded = cli("db", "upgrade", "--db", "team.db")
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"to revision {HEAD_REVISION} (schema {SCHEMA_VERSION})" in upgraded.stderr
    current = cli("db", "current", "--db", "team.db")
    assert f"revision {HEAD_REVISION} (schema {SCHEMA_VERSION}), up to date" in current.stdout
    assert not (elsewhere / "alembic.ini").exists()


def test_alembic_from_a_checkout_says_what_it_ran(tmp_path):
    db = tmp_path / "dev.db"
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"db={db}", "upgrade", "head"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Running upgrade  -> 0001" in result.stderr
    known = list(SCHEMA_BY_REVISION)
    for older, newer in itertools.pairwise(known):
        assert f"Running upgrade {older} -> {newer}" in result.stderr
    assert known[-1] == HEAD_REVISION
    assert list(tmp_path.iterdir()) == [db]


@pytest.mark.slow
def test_the_installed_package_serves_the_dashboard_and_its_vendored_library(installed, tmp_path):
    static = installed / "townlet" / "web" / "static"
    for name in ("index.html", "app.js", "app.css", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css",
                 "vendor/uPlot.LICENSE"):  # fmt: skip
        assert (static / name).is_file(), name
    probe = (
        "from starlette.testclient import TestClient\n"
        "from townlet.web.app import STATIC, create_app\n"
        "client = TestClient(create_app('unused.db'), base_url='http://127.0.0.1')\n"
        "script = client.get('/static/vendor/uPlot.iife.min.js')\n"
        "assert script.status_code == 200\n"
        "assert script.content == (STATIC / 'vendor' / 'uPlot.iife.min.js').read_bytes()\n"
        "assert 'app.js' in client.get('/runs/1').text\n"
        "print(STATIC)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(installed)}
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(static)
