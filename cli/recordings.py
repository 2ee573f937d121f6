"""``townlet-telemetry recordings`` and ``replay --steps`` / ``--play``: a recorded episode's every step."""

import sys
import time
from typing import Annotated

import typer

from townlet.errors import TelemetryError
from townlet.persistence.reader import RunSummary, TelemetryReader
from townlet.persistence.recordings import recordings_report
from townlet.telemetry.payloads import step_lines
from townlet.telemetry.recording import STEP_COLUMNS, AgentRecording, RecordingHeader
from townlet.wording import counted
from townlet_cli.console import make_console
from townlet_cli.grid_view import frame
from townlet_cli.options import DEFAULT, DbOption, JsonFlag, RunOption
from townlet_cli.output import fmt, machine_format, stdout_bytes, write_csv, write_json


def recordings(db: DbOption = DEFAULT, run: RunOption = None, as_json: JsonFlag = False) -> None:
    """List a run's recorded episodes: why each was recorded, its agents, steps and stored bytes.

    Why: every (every Nth episode, recording.every), stage (the first episode at a curriculum stage),
    session_last (the last planned episode of a train session), asked (recording.episodes or
    --record-episodes). Replay one with `replay --episode N --steps` or `--play`.

    Example: townlet-telemetry recordings --run 1 --json
    """
    with TelemetryReader(db) as reader:
        chosen = reader.run(run)
        found = reader.recordings(chosen)
    if as_json:
        write_json(recordings_report(chosen.id, found))
        return
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"recordings of run {chosen.id} in {reader.label}", box=box.SIMPLE_HEAD, collapse_padding=True,
        caption="why: every Nth, stage start, session_last, asked; B/step = stored bytes per agent-step",
    )  # fmt: skip
    for name in ("episode", "stage", "why", "agents", "steps", "agent steps", "bytes", "B/step"):
        table.add_column(name, justify="left" if name == "why" else "right", no_wrap=True)
    for r in found:
        per = fmt(r.bytes_per_agent_step)
        table.add_row(str(r.episode), str(r.stage), ", ".join(r.reasons), str(r.agents), str(r.steps),
                      str(r.agent_steps), str(r.size_bytes), per)  # fmt: skip
    console = make_console()
    console.print(table, soft_wrap=False)
    if not found:
        console.print(f"run {chosen.id} has no recorded episodes (see [recording] in configs/default.toml)")


class StepOutOfRange(TelemetryError):
    """--from/--to outside the recorded agent's steps."""


def load_agent(
    reader: TelemetryReader, run: RunSummary, episode: int, agent: int | None
) -> tuple[RecordingHeader, AgentRecording]:
    head = reader.recording_header(run, episode)
    return head, reader.recorded_agent(run, episode, reader.followed_agent(run, episode, agent, head), head)


def step_range(steps: AgentRecording, first: int | None, last: int | None, episode: int) -> tuple[int, int]:
    first = 1 if first is None else first
    last = steps.steps if last is None else last
    if not 1 <= first <= last <= steps.steps:
        raise StepOutOfRange(
            f"agent {steps.agent_idx} has steps 1 to {steps.steps} in episode {episode}: pick --from/--to inside them"
        )
    return first, last


def print_steps(
    reader: TelemetryReader, run: RunSummary, episode: int, agent: int | None, first: int | None,
    last: int | None, as_json: bool, as_csv: bool,
) -> None:  # fmt: skip
    """``replay --steps``: one row per step of one recorded agent (the first recorded one by default)."""
    kind = machine_format(as_json, as_csv)
    head, steps = load_agent(reader, run, episode, agent)
    first, last = step_range(steps, first, last, episode)
    rows = steps.step_dicts(head, first, last)
    if kind == "json":
        out = stdout_bytes()
        out.write(step_lines(rows))
        out.flush()
        return
    columns = [*STEP_COLUMNS, *(["q_values"] if head.q_values else [])]
    if kind == "csv":
        write_csv(columns, ([row[c] for c in columns] for row in rows))
        return
    from rich import box
    from rich.table import Table

    title = f"run {run.id} episode {episode} agent {steps.agent_idx}: steps {first}-{last} of {steps.steps}"
    table = Table(
        title=title, box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True, pad_edge=False, caption=TABLE_CAPTION
    )
    for name in TABLE_HEADINGS:
        table.add_column(name, justify="right", no_wrap=True)
    for row in rows:
        meters = (f"{row[f'meter_{m}']:.3f}" for m in head.meters)
        how = "explore" if row["explored"] else "greedy"
        table.add_row(str(row["step"]), f"{row['row']},{row['col']}", row["action"], how, fmt(row["reward"]),
                      *meters, row["affordance"] or "", row["death_cause"] or "")  # fmt: skip
    make_console().print(table, soft_wrap=False)


TABLE_HEADINGS = ("step", "cell", "action", "how", "reward", "en", "hy", "sa", "mo", "used", "died")
TABLE_CAPTION = (
    "cell = row,col after the step; en/hy/sa/mo = energy, hygiene, satiation, money after it; "
    "--json or --csv: every value at full precision"
)


def play(
    reader: TelemetryReader, run: RunSummary, episode: int, agent: int | None, first: int | None,
    last: int | None, fps: float,
) -> None:  # fmt: skip
    """``replay --play``: the grid, every recorded agent, the followed one's meters; frames one after another
    when stdout is not a terminal. Ctrl-C stops it (exit 130, one line)."""
    head = reader.recording_header(run, episode)
    followed = reader.followed_agent(run, episode, agent, head)
    everyone = {a.agent_idx: a for a in reader.recorded_agents(run, episode, head)}
    first, last = step_range(everyone[followed], first, last, episode)

    def draw(t: int) -> object:
        positions = {}
        for index, a in everyone.items():
            i = min(t, a.steps) - 1
            positions[index] = a.start if i < 0 else (a.rows[i], a.cols[i])
        me = everyone[followed]
        i = min(t, me.steps) - 1
        meters = [(m, me.meters[j][i] if i >= 0 else head.initial_meters[j]) for j, m in enumerate(head.meters)]
        act = f" · {head.actions[me.actions[i]]}" if i >= 0 else ""
        used = f" at {head.affordance_names[me.affordances[i]]}" if i >= 0 and me.affordances[i] >= 0 else ""
        end = f" · died of {me.death_cause}" if t >= me.steps and me.death_cause != "timeout" else ""
        status = f"run {run.id} episode {episode} · agent {followed} · step {t}/{me.steps}{act}{used}{end}"
        return frame(head.grid_size, head.affordances, positions, followed, meters, status)

    console = make_console()
    if not sys.stdout.isatty():
        for t in range(first, last + 1):
            console.print(draw(t), soft_wrap=False)
            console.print()
        return
    from rich.live import Live

    t = first
    try:
        with Live(draw(first), console=console, auto_refresh=False, transient=False) as live:
            for t in range(first, last + 1):
                live.update(draw(t), refresh=True)
                time.sleep(1.0 / fps)
    except KeyboardInterrupt:
        make_console(stderr=True).print(f"stopped at step {t} of {counted(last, 'step')}", markup=False)
        raise typer.Exit(code=130) from None


Steps = Annotated[bool, typer.Option("--steps", help="Every step of a recorded agent (see `recordings`).")]
Play = Annotated[bool, typer.Option("--play", help="Play the recorded episode on the grid, in the terminal.")]
