"""``train --seeds``: the same config trained once per seed, one run each, tagged as one group.

Each seed is its own ``train`` process (``python -m townlet_cli train ... --seed S --tag GROUP``), so each run
has its own run lock and its own learner, exactly as when the runs are launched one by one or by a cluster's
scheduler: grouping never depends on how the runs were started. ``--parallel K`` keeps K of them going.

The children run in their own process group: a signal reaches this process once (Ctrl-C on the terminal,
SIGTERM from a scheduler) and is passed on once to every child still training, which stops after its
episode as a lone ``train`` does; a second signal is passed on too and stops them at once. No seed is
started after a signal. Each child's lines are prefixed with its seed.
"""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

from townlet.errors import ConfigError
from townlet.wording import counted

#: Exit codes of a stopped ``train`` (128 + the signal), as the lone command uses them.
STOP_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


def parse_seeds(text: str) -> list[int]:
    """``0,1,2``, ``0-4`` or ``0-2,7`` -> the seeds in order; a repeat or a malformed part is refused."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ConfigError(f"--seeds takes seeds >= 0 as 0,1,2 or a range 0-4, got {part!r}")
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise ConfigError(f"--seeds range {part!r} runs backwards: write {last}-{first}")
        for seed in range(first, last + 1):
            if seed in seeds:
                raise ConfigError(f"seed {seed} appears twice in --seeds {text}: each seed trains one run")
            seeds.append(seed)
    return seeds


def group_tag() -> str:
    """A tag no other group has: ``seeds-`` and 8 hex digits."""
    return f"seeds-{uuid.uuid4().hex[:8]}"


@dataclass
class _Child:
    seed: int
    process: subprocess.Popen[bytes]
    pump: threading.Thread


@dataclass
class SeedsOutcome:
    """How each seed's process ended (its exit code by seed) and which signal stopped the group, if any."""

    codes: dict[int, int] = field(default_factory=dict)
    not_started: list[int] = field(default_factory=list)
    signal: int | None = None

    @property
    def exit_code(self) -> int:
        if self.signal is not None:
            return STOP_CODES.get(self.signal, 130)
        return next((code for code in self.codes.values() if code != 0), 0)


def _pump(stream: IO[bytes], prefix: str, lock: threading.Lock) -> None:
    """Copy a child's lines to our stderr, each prefixed, whole lines at a time (output stays readable)."""
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        with lock:
            sys.stderr.write(f"{prefix}{line}\n")
            sys.stderr.flush()
    stream.close()


def run_seeds(child_args: Sequence[str], seeds: Sequence[int], parallel: int) -> SeedsOutcome:
    """Train one child per seed, ``parallel`` at a time, passing signals on; returns how each ended."""
    outcome = SeedsOutcome()
    pending = list(seeds)
    running: list[_Child] = []
    lock = threading.Lock()
    width = max(len(str(s)) for s in seeds)

    def forward(signum: int, frame: object) -> None:
        outcome.signal = outcome.signal or signum
        for child in running:
            if child.process.poll() is None:
                child.process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in STOP_CODES}
    try:
        while pending or running:
            while pending and len(running) < parallel and outcome.signal is None:
                seed = pending.pop(0)
                command = [sys.executable, "-m", "townlet_cli", "train", *child_args, "--seed", str(seed)]
                process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )  # fmt: skip
                assert process.stderr is not None
                pump = threading.Thread(
                    target=_pump, args=(process.stderr, f"[seed {seed:>{width}}] ", lock), daemon=True
                )
                pump.start()
                running.append(_Child(seed, process, pump))
            if outcome.signal is not None and pending:
                outcome.not_started.extend(pending)
                pending.clear()
            for child in list(running):
                code = child.process.poll()
                if code is not None:
                    child.pump.join()
                    outcome.codes[child.seed] = code
                    running.remove(child)
            time.sleep(0.05)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return outcome


def describe(outcome: SeedsOutcome, runs_by_seed: dict[int, int], tag: str) -> list[str]:
    """What the group's summary says: one line per seed, then how to compare them."""
    lines = []
    for seed, code in outcome.codes.items():
        run = runs_by_seed.get(seed)
        where = f"run {run}" if run is not None else "no run"
        how = "finished" if code == 0 else ("stopped" if code in STOP_CODES.values() else f"failed (exit {code})")
        lines.append(f"seed {seed}: {where}, {how}")
    if outcome.not_started:
        lines.append(f"not started after the signal: {counted(len(outcome.not_started), 'seed')} "
                     f"({', '.join(map(str, outcome.not_started))})")  # fmt: skip
    lines.append(f"compare them: townlet-telemetry compare --tag {tag}")
    return lines
