"""``townlet-telemetry replay``: one episode's per-agent snapshot exactly as it was recorded."""

from typing import Annotated

import typer

from townlet.persistence.reader import EpisodeAgents, TelemetryReader
from townlet.telemetry.payloads import build_envelope
from townlet_cli.agents_table import agents_table
from townlet_cli.console import make_console
from townlet_cli.options import DEFAULT, AgentOption, AtLeast, DbOption, RunOption
from townlet_cli.output import ConflictingOptions, write_json
from townlet_cli.recordings import Play, Steps, play, print_steps


def replay(
    episode: Annotated[int, typer.Option("--episode", "-e", help="Episode number to replay.", click_type=AtLeast(1))],
    db: DbOption = DEFAULT,
    run: RunOption = None,
    agent: AgentOption = None,
    max_rows: Annotated[
        int,
        typer.Option(
            "--max-rows", help="Table rows to show at most (--json always has every agent).", click_type=AtLeast(1)
        ),
    ] = 64,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the episode's envelope, byte-identical to what the live stream sent (with --steps: one "
            "step a line).",
        ),
    ] = False,
    steps: Steps = False,
    first: Annotated[
        int | None,
        typer.Option("--from", help="With --steps or --play: the first step (1-based).", click_type=AtLeast(1)),
    ] = None,
    last: Annotated[
        int | None, typer.Option("--to", help="With --steps or --play: the last step.", click_type=AtLeast(1))
    ] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="With --steps: CSV with a header row on stdout.")] = False,
    playing: Play = False,
    fps: Annotated[float, typer.Option("--fps", help="With --play: frames (steps) per second.")] = 10.0,
) -> None:
    """Replay one episode: its per-agent snapshot at the end, or (recorded episodes) every step.

    With --json, stdout is the episode envelope built and encoded by the same code as the live stream
    (sorted keys, compact), followed by one newline; an episode written under an older schema version
    replays as that version. With --agent the envelope holds that agent only.

    A recorded episode (see `recordings`) also replays step by step: --steps prints one row per step of one
    agent (--agent K, default the first recorded one; --from/--to a range) with its cell, action, whether it
    explored, reward, meters and the affordance it used, as a table, --json (one object a line) or --csv;
    --play draws the grid in the terminal with every recorded agent and the followed one's meters (--fps;
    Ctrl-C stops), frames one after another when stdout is not a terminal.

    Examples: townlet-telemetry replay --episode 12 --run 1 --json;
    townlet-telemetry replay --episode 10 --steps --agent 3 --from 50 --to 80;
    townlet-telemetry replay --episode 10 --play --agent 3
    """
    if steps and playing:
        raise ConflictingOptions("--steps and --play cannot be used together: pick one")
    if not (steps or playing) and (first is not None or last is not None or as_csv):
        raise ConflictingOptions("--from, --to and --csv go with --steps (or --from/--to with --play)")
    if playing and (as_json or as_csv):
        raise ConflictingOptions("--play draws the grid: use --steps for --json or --csv")
    if not fps > 0 or fps != fps:
        raise ConflictingOptions(f"--fps must be > 0, got {fps:g}: e.g. --fps 10")
    with TelemetryReader(db) as reader:
        chosen = reader.run(run)
        if steps:
            print_steps(reader, chosen, episode, agent, first, last, as_json, as_csv)
            return
        if playing:
            play(reader, chosen, episode, agent, first, last, fps)
            return
        found = reader.episode_agents(chosen, episode, agent)
    if as_json:
        write_json(build_envelope(chosen.run_uuid, episode, found.agents, found.schema_version))
        return
    _table(reader.label, found, max_rows)


def _table(label: str, found: EpisodeAgents, max_rows: int) -> None:
    run = found.run
    title = f"run {run.id} ({run.run_uuid}) episode {found.episode} in {label} · schema v{found.schema_version}"
    hint = "--agent I for one, --max-rows N or --json for more"
    table = agents_table(title, found.agents, found.schema_version, max_rows, hint)
    make_console().print(table, soft_wrap=False)  # a long title (a long --db path) wraps to the terminal
