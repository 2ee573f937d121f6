"""``townlet-telemetry train``: run the trainer with a live progress bar and a summary."""

import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from townlet.config import load_config, with_overrides


def train(
    episodes: Annotated[int | None, typer.Option("--episodes", "-n", help="Episodes to train.", min=1)] = None,
    agents: Annotated[int | None, typer.Option("--agents", "-a", help="Agents stepped together.", min=1)] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", "-s", help="Random seed (same seed on CPU, same run).", min=0)
    ] = None,
    device: Annotated[str | None, typer.Option("--device", "-d", help="auto, cpu or cuda.")] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML file over the built-in defaults (see configs/default.toml)."),
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

    Example: townlet-telemetry train --episodes 30 --agents 8 --seed 0 --device cpu
    """
    settings = with_overrides(
        load_config(config), "training", episodes=episodes, agents=agents, seed=seed, device=device
    )
    from townlet.devices import resolve_device  # torch is imported only by commands that train
    from townlet.telemetry.live import WebSocketBroadcaster, parse_address
    from townlet.telemetry.payloads import hello_message
    from townlet.telemetry.stream import EpisodePublisher
    from townlet.training.interrupt import StopAfterEpisode
    from townlet.training.loop import EpisodeReport, Trainer

    t = settings.training
    console = Console()
    live_address = parse_address(live) if live is not None else None
    trainer = Trainer(settings, resolve_device(t.device))
    run_id = uuid.uuid4().hex
    broadcaster = None
    if live_address is not None:
        host, port = live_address
        broadcaster = WebSocketBroadcaster(host, port, hello=hello_message(run_id, t.agents)).start()
        console.print(f"live telemetry on {broadcaster.url} (watch with: townlet-telemetry watch {broadcaster.url})")
    publisher = EpisodePublisher(run_id, [broadcaster] if broadcaster is not None else [])
    reports: list[EpisodeReport] = []
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
    console.print(f"training {t.agents} agents for {t.episodes} episodes on {trainer.device} (seed {t.seed})")
    with StopAfterEpisode() as stop, Progress(*columns, console=console) as progress:
        task = progress.add_task("train", total=t.episodes, survival=0.0, baseline=0.0, epsilon=1.0, stage=1)
        for report in trainer.run(t.episodes, stop=stop):
            reports.append(report)
            publisher.publish_episode(report.episode, report.snapshot)
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
        stopped_early = stop.requested
    publisher.close()
    _print_summary(console, reports, stopped_early)
    if broadcaster is not None:
        console.print(
            f"live stream: {broadcaster.published} envelopes, {broadcaster.clients_served} client(s), "
            f"{broadcaster.dropped} dropped for slow clients"
        )


def _print_summary(console: Console, reports: list, stopped_early: bool) -> None:
    if not reports:
        console.print("no episode finished")
        return
    first, last = reports[0], reports[-1]
    table = Table(title="training summary" + (" (stopped by Ctrl-C)" if stopped_early else ""))
    table.add_column("")
    table.add_column("first episode", justify="right")
    table.add_column("last episode", justify="right")
    table.add_row("episode", str(first.episode), str(last.episode))
    table.add_row("mean survival", f"{first.mean_survival:.1f}", f"{last.mean_survival:.1f}")
    table.add_row("baseline", f"{first.mean_baseline:.1f}", f"{last.mean_baseline:.1f}")
    table.add_row("epsilon", f"{first.epsilon:.3f}", f"{last.epsilon:.3f}")
    table.add_row("stage", str(first.stage), str(last.stage))
    console.print(table)
    console.print(f"{len(reports)} episodes in {sum(r.duration_s for r in reports):.1f}s")
