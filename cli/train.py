"""``townlet-telemetry train``: run the trainer with a live progress bar and a summary."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from townlet_cli.console import make_console
from townlet_cli.options import DEFAULT, INT64_MAX, DbOption

if TYPE_CHECKING:
    from rich.console import Console

    from townlet.training.loop import EpisodeReport
    from townlet.training.session import SessionResult


def train(
    episodes: Annotated[
        int | None, typer.Option("--episodes", "-n", help="Episodes to train.", min=1, max=INT64_MAX)
    ] = None,
    agents: Annotated[
        int | None, typer.Option("--agents", "-a", help="Agents stepped together.", min=1, max=INT64_MAX)
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", "-s", help="Random seed (same seed on CPU, same run).", min=0, max=INT64_MAX)
    ] = None,
    device: Annotated[str | None, typer.Option("--device", "-d", help="auto, cpu or cuda.")] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML file over the built-in defaults (see configs/default.toml)."),
    ] = None,
    db: DbOption = DEFAULT,
    resume: Annotated[
        int | None,
        typer.Option(
            "--resume", help="Continue run RUN (crashed or finished) after its last episode.", min=1, max=INT64_MAX
        ),
    ] = None,
    live: Annotated[
        str | None,
        typer.Option("--live", help="Serve each episode's envelope on a websocket, e.g. 127.0.0.1:8765."),
    ] = None,
) -> None:
    """Train the agents, showing episode, mean survival, baseline, epsilon and curriculum stage.

    Flags override the \\[training] table of --config.

    Ctrl-C stops cleanly after the current episode; press it twice to stop at once.

    --live HOST:PORT streams each episode's envelope to websocket clients (see `watch`).

    A slow client never stalls training: its oldest queued envelopes are dropped and counted.

    Every episode is written to --db; a new database is created, an older one must be upgraded first.

    --resume RUN continues a stopped run, numbering episodes after its last committed one.

    Example: townlet-telemetry train --episodes 30 --agents 8 --seed 0 --device cpu
    """
    from townlet.config import load_config, with_overrides  # frozen dataclasses: only train needs them

    settings = with_overrides(
        load_config(config), "training", episodes=episodes, agents=agents, seed=seed, device=device
    )
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from townlet.telemetry.live import parse_address

    live_address = parse_address(live) if live is not None else None
    from townlet.training.interrupt import StopAfterEpisode  # torch is imported only by commands that train
    from townlet.training.session import TrainingSession

    console = make_console()
    session = TrainingSession(
        settings,
        db=db,
        live=live_address,
        resume=resume,
        on_live_start=lambda url: console.print(f"live telemetry on {url} (watch with: townlet-telemetry watch {url})"),
    )
    t = session.config.training
    first = session.result.first_episode
    verb = f"resuming run {session.result.run} at episode {first}:" if resume is not None else "training"
    console.print(
        f"{verb} {t.agents} agents for {t.episodes} episodes on {session.trainer.device} (seed {t.seed}), "
        f"run {session.result.run} in {session.store.label}"
    )
    columns = (
        TextColumn("[bold]episode"),
        MofNCompleteColumn(),
        BarColumn(),
        TextColumn("survival {task.fields[survival]:>6.1f}"),
        TextColumn("baseline {task.fields[baseline]:>6.1f}"),
        TextColumn("ε {task.fields[epsilon]:.3f}"),
        TextColumn("stage {task.fields[stage]}"),
        TimeElapsedColumn(),
    )
    with StopAfterEpisode() as stop, Progress(*columns, console=console) as progress:
        task = progress.add_task("train", total=t.episodes, survival=0.0, baseline=0.0, epsilon=1.0, stage=1)

        def on_episode(report: "EpisodeReport") -> None:
            if report.stage_change is not None:
                change = report.stage_change
                progress.console.print(
                    f"episode {report.episode}: stage {change.from_stage} → {change.to_stage} ({change.reason})"
                )
            progress.update(
                task,
                advance=1,
                survival=report.mean_survival,
                baseline=report.mean_baseline,
                epsilon=report.epsilon,
                stage=report.stage,
            )

        result = session.run(stop=stop, on_episode=on_episode)
    _print_summary(console, result)


def _print_summary(console: "Console", result: "SessionResult") -> None:
    from rich.table import Table

    reports = result.reports
    if not reports:
        console.print(f"no episode finished; run {result.run} marked {result.status}")
        return
    first, last = reports[0], reports[-1]
    stopped = " (stopped by Ctrl-C)" if result.status == "crashed" else ""
    table = Table(title=f"training summary{stopped}")
    table.add_column("")
    table.add_column("first episode", justify="right")
    table.add_column("last episode", justify="right")
    table.add_row("episode", str(first.episode), str(last.episode))
    table.add_row("mean survival", f"{first.mean_survival:.1f}", f"{last.mean_survival:.1f}")
    table.add_row("baseline", f"{first.mean_baseline:.1f}", f"{last.mean_baseline:.1f}")
    table.add_row("epsilon", f"{first.epsilon:.3f}", f"{last.epsilon:.3f}")
    table.add_row("stage", str(first.stage), str(last.stage))
    console.print(table)
    console.print(
        f"run {result.run} {result.status}: {result.written} episodes written, "
        f"writer blocked training {result.writer_blocked_s:.2f}s"
    )
    if result.live_published:
        console.print(
            f"live stream: {result.live_published} envelopes, {result.live_clients} client(s), "
            f"{result.live_dropped} dropped for slow clients"
        )
    console.print(f"{len(reports)} episodes in {sum(r.duration_s for r in reports):.1f}s")
