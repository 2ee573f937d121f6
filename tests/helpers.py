"""Small builders shared by tests: filled registries and free loopback ports."""

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import torch

from townlet.environment.world import CAUSE_TIMEOUT, METERS
from townlet.population.runtime_registry import AgentRuntimeRegistry


def finished_registry(n: int = 4, baselines: list[float] | None = None) -> AgentRuntimeRegistry:
    """A registry as it looks at the end of an episode: everyone timed out at step 200."""
    registry = AgentRuntimeRegistry(n)
    registry.set_baselines(torch.tensor(baselines) if baselines is not None else 100.0)
    registry.set_epsilon(0.25)
    registry.set_curriculum_stage(2)
    steps = torch.arange(1, n + 1) * 10
    registry.record_step(
        steps,
        steps.float() - registry.get_baseline_tensor(),
        torch.ones(n, dtype=torch.bool),
        torch.full((n,), CAUSE_TIMEOUT),
        torch.linspace(0, 1, n * len(METERS)).reshape(n, len(METERS)),
    )
    return registry


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds (a hung process)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 now (a server still starting, or gone, does not)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


FIXTURES = Path(__file__).parent / "fixtures"
#: The schema version 1 database written by the version 1 code (tests/fixtures/README.md): never modified.
V1_FIXTURE = FIXTURES / "townlet_v1.db"


#: The revision 0002 database written by townlet 0.3.0 (tests/fixtures/README.md): never modified.
V2_FIXTURE = FIXTURES / "townlet_v2.db"
#: The revision 0003 database written by townlet 0.7.0, before the rollups (tests/fixtures/README.md).
V3_FIXTURE = FIXTURES / "townlet_v3.db"
V4_FIXTURE = FIXTURES / "townlet_v4.db"
#: The revision 0005 database written by townlet 0.9.0, before the recordings (tests/fixtures/README.md).
V5_FIXTURE = FIXTURES / "townlet_v5.db"
#: The revision 0006 database written by townlet 0.10.0, before run names and tags (tests/fixtures/README.md).
V6_FIXTURE = FIXTURES / "townlet_v6.db"
#: An agent row's fields besides its index, stage, baseline and survival (tests that write rows by hand).
TEMPLATE = {
    "episode": 1, "curriculum_stage": 1, "baseline_survival_steps": 100.0, "survival_steps": 100,
    "episode_reward": 0.0, "epsilon": 0.5, "death_cause": "energy", "meter_energy": 0.0, "meter_hygiene": 0.5,
    "meter_satiation": 0.25, "meter_money": 0.75, "visits_bed": 1, "visits_shower": 2, "visits_fridge": 3,
    "visits_job": 4, "action_entropy": 1.25,
}  # fmt: skip
#: What ``db check`` says when every rollup and flag holds.
ALL_MATCH = "every rollup, baseline flag and survival block matches the agent rows"


def fixture_copy(directory: Path, fixture: Path, name: str = "townlet.db") -> Path:
    """A copy of a committed fixture database to upgrade, downgrade or tamper with."""
    copy = directory / name
    shutil.copy(fixture, copy)
    return copy


def v1_copy(directory: Path, name: str = "townlet.db") -> Path:
    """A copy of the committed V1 fixture database."""
    return fixture_copy(directory, V1_FIXTURE, name)


class Lines:
    """A process's stderr (where train and serve say everything) read line by line on a thread, so a test
    can wait for a line while it runs."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            self.lines.append(line)

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def text(self) -> str:
        self._thread.join(10)
        return "".join(self.lines)

    def stderr(self, timeout: float | None = None) -> str:
        """Wait for the process to end and return all its stderr (read by the thread)."""
        self.proc.wait(timeout=timeout)
        return self.text()


def townlet(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``townlet-telemetry ARGS`` as a real process (``python -m townlet_cli``), its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "townlet_cli", *args],
        capture_output=True, text=True, timeout=300, check=False, cwd=cwd, env=env,
    )  # fmt: skip


def trained(path: Path, *, episodes: int, agents: int) -> Path:
    """A database at ``path`` holding one finished run, trained by ``townlet-telemetry train`` (in-process)."""
    from typer.testing import CliRunner

    from townlet_cli.app import app

    args = ["train", "--episodes", str(episodes), "--agents", str(agents), "--device", "cpu", "--db", str(path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return path


def tamper(db: Path, sql: str) -> None:
    """Change a SQLite database behind townlet's back (one statement, committed; the connection closed)."""
    import sqlite3

    connection = sqlite3.connect(db)
    try:
        with connection:
            connection.execute(sql)
    finally:
        connection.close()


def serve(db: Path | str, port: int, *extra: str) -> subprocess.Popen:
    """``townlet-telemetry serve`` on ``db`` at 127.0.0.1:``port`` as a real process, its output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "townlet_cli", "serve", "--db", str(db), "--port", str(port), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def low_survivor(db: Path, *, episodes: int = 6) -> Path:
    """A database (written through the store) whose one agent survives under half its baseline for
    ``episodes`` episodes: from the fifth on, a run with a baseline flag."""
    from datetime import UTC, datetime

    from townlet.persistence.store import EpisodeMeta, TelemetryStore
    from townlet.telemetry.dto import CURRENT_DTO

    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    with TelemetryStore.open(str(db), write=True) as store:
        run = store.create_run(run_uuid="f" * 32, seed=0, device="cpu", num_agents=1, config={})
        for episode in range(1, episodes + 1):
            agent = {**TEMPLATE, "agent_idx": 0, "episode": episode, "survival_steps": 10}
            store.write_episode(run, EpisodeMeta(episode, 10, 1, 0.1, now, now), CURRENT_DTO.check_dicts([agent]))
        store.set_run_status(run, "finished")
    return db


def cli_ok(*args: str):
    """``townlet-telemetry ARGS`` in-process; its result, having checked it exited 0."""
    from typer.testing import CliRunner

    from townlet_cli.app import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def fixture_columns(fixture: Path, table: str) -> str:
    """The columns ``table`` had in a committed fixture, comma-separated: what an upgrade must keep as it was
    (a later revision may add columns, e.g. ``runs.name`` in 0007)."""
    return ", ".join(row[1] for row in db_rows(fixture, f"PRAGMA table_info({table})"))


def db_rows(db: Path, sql: str) -> list[tuple]:
    """Rows of a query on a SQLite file, read without creating sidecars."""
    import sqlite3

    connection = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


#: The episodes of ``townlet_v3.db`` and ``townlet_v4.db`` in the order of their replay files.
FIXTURE_EPISODES = [(1, e) for e in range(1, 8)] + [(2, e) for e in range(1, 4)]


#: What a downgrade below revision 0007 says first of a database nobody named or tagged a run in.
LABELS_DROPPED = "drops columns name of runs (values in 0 rows); drops tables run_tags (0 rows), "


def unlabelled_runs(listed: str) -> list[dict]:
    """``runs --json`` of a database upgraded from before revision 0007, which added each run's name and tags:
    those are checked to be null and empty, and the rest is returned to compare with what the old code listed."""
    runs = json.loads(listed)
    assert [(run.pop("name"), run.pop("tags")) for run in runs] == [(None, [])] * len(runs)
    return runs


def assert_fixture_answers(db: Path, version: int) -> None:
    """Every answer captured beside ``townlet_v<version>.db`` (tests/fixtures/README.md) comes out of ``db``
    byte-identical: episodes, runs, replays, export and the three audits, run 1 then run 2."""

    def captured(name: str) -> list[bytes]:
        return (FIXTURES / f"townlet_v{version}.{name}").read_bytes().splitlines(keepends=True)

    flag = ("--db", str(db))
    assert [cli_ok("episodes", "--run", r, "--json", *flag).stdout_bytes for r in "12"] == captured("episodes.jsonl")
    assert unlabelled_runs(cli_ok("runs", "--json", *flag).stdout) == json.loads(b"".join(captured("runs.json")))
    for (run, episode), before in zip(FIXTURE_EPISODES, captured("replay.jsonl"), strict=True):
        assert cli_ok("replay", "--run", str(run), "--episode", str(episode), "--json", *flag).stdout_bytes == before
    exported = b"".join(cli_ok("export", "-f", "jsonl", "--run", r, *flag).stdout_bytes for r in "12")
    assert exported == b"".join(captured("export.jsonl"))
    for name in ("rewards", "visits", "baselines"):
        answers = [cli_ok("audit", name, "--run", r, "--json", *flag).stdout_bytes for r in "12"]
        assert answers == captured(f"{name}.jsonl"), name
