"""``townlet-telemetry replay``: one episode's per-agent snapshot exactly as it was recorded."""

from typing import Annotated

import typer

from townlet.persistence.reader import EpisodeAgents, TelemetryReader
from townlet.telemetry.payloads import build_envelope
from townlet_cli.agents_table import agents_table
from townlet_cli.console import make_console
from townlet_cli.options import DEFAULT, AgentOption, AtLeast, DbOption, RunOption
from townlet_cli.output import write_json


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
        typer.Option("--json", help="Print the episode's envelope, byte-identical to what the live stream sent."),
    ] = False,
) -> None:
    """Replay one episode's per-agent snapshot exactly as it was recorded.

    With --json, stdout is the episode envelope built and encoded by the same code as the live stream
    (sorted keys, compact), followed by one newline; an episode written under an older schema version
    replays as that version. With --agent the envelope holds that agent only.

    Example: townlet-telemetry replay --episode 12 --run 1 --json
    """
    with TelemetryReader(db) as reader:
        chosen = reader.run(run)
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
