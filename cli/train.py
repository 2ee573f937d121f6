"""``townlet-telemetry train``: run the trainer with a live progress bar and a summary."""

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from townlet import defaults
from townlet.errors import TelemetryError
from townlet.wording import counted
from townlet_cli.console import make_console
from townlet_cli.network import warn_if_reachable
from townlet_cli.options import DEFAULT, AtLeast, DbOption

if TYPE_CHECKING:
    from rich.console import Console

    from townlet.training.interrupt import StopAfterEpisode
    from townlet.training.loop import EpisodeReport
    from townlet.training.session import SessionResult, TrainingSession


def train(
    episodes: Annotated[
        int | None,
        typer.Option(
            "--episodes",
            "-n",
            help=f"Episodes to train \\[config default: {defaults.EPISODES}].",
            click_type=AtLeast(1),
        ),
    ] = None,
    agents: Annotated[
        int | None,
        typer.Option(
            "--agents",
            "-a",
            help=f"Agents stepped together \\[config default: {defaults.AGENTS}].",
            click_type=AtLeast(1),
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            "-s",
            help=f"Random seed, same seed on CPU, same run \\[config default: {defaults.SEED}].",
            click_type=AtLeast(0),
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            "-d",
            metavar="auto|cpu|cuda[:N]",
            help=f"Where to train: auto (cuda when available), cpu, cuda or cuda:N "
            f"\\[config default: {defaults.DEVICE}].",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML file over the built-in defaults (see configs/default.toml)."),
    ] = None,
    db: DbOption = DEFAULT,
    resume: Annotated[
        int | None,
        typer.Option(
            "--resume",
            help="Continue run RUN (any stopped run) from its last learner checkpoint; see below.",
            click_type=AtLeast(1),
        ),
    ] = None,
    from_checkpoint: Annotated[
        int | None,
        typer.Option(
            "--from-checkpoint",
            help="With --resume: continue from the checkpoint after this episode instead of the newest "
            "(the episodes after it are trained again).",
            click_type=AtLeast(1),
        ),
    ] = None,
    fresh_learner: Annotated[
        bool,
        typer.Option(
            "--fresh-learner",
            help="With --resume: keep every stored episode and continue after the last one with a new learner "
            "(new networks, epsilon from the start, empty replay), ignoring the run's checkpoints.",
        ),
    ] = False,
    live: Annotated[
        str | None,
        typer.Option(
            "--live", metavar="HOST:PORT", help="Serve each episode's envelope on a websocket, e.g. 127.0.0.1:8765."
        ),
    ] = None,
    record_episodes: Annotated[
        str | None,
        typer.Option(
            "--record-episodes",
            metavar="N,N,...",
            help="Also record every step of these episodes, e.g. 1,50,100 (added to recording.episodes).",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", metavar="TEXT", help="Name the run (at most 120 characters; `runs rename` changes it)."),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag", "-t", metavar="TAG", help="Tag the run (repeatable; letters, digits, _ . : + = -; `runs tag`)."
        ),
    ] = None,
    seeds: Annotated[
        str | None,
        typer.Option(
            "--seeds",
            metavar="0,1,2|0-4",
            help="Train this config once per seed, one run each, all tagged with one new group tag "
            "(seeds-XXXXXXXX); see below.",
        ),
    ] = None,
    parallel: Annotated[
        int,
        typer.Option("--parallel", "-j", help="With --seeds: train K seeds at once.", click_type=AtLeast(1)),
    ] = 1,
    log_every: Annotated[
        int,
        typer.Option(
            "--log-every",
            help="Where stderr is not a terminal (a log file, a batch job): one line every N episodes "
            "(0: every episode up to 100, then about 100 lines per session).",
            click_type=AtLeast(0),
        ),
    ] = 0,
) -> None:
    """Train the agents, showing episode, mean survival, baseline, epsilon and curriculum stage.

    Everything train says goes to stderr (stdout stays empty): on a terminal a progress bar counting the
    run's episodes; in a log (stderr not a terminal) one plain line every --log-every episodes with the same
    fields, stage changes and database waits as they happen, then the summary.

    Flags override the \\[training] table of --config (the defaults shown are the built-in config's).

    Ctrl-C stops cleanly after the current episode (exit code 130); press it twice to stop at once. SIGTERM
    (kill, timeout, SLURM or Kubernetes preemption) and SIGHUP (a closed terminal) mean the same and exit 143
    and 129: the episode finishes, the final checkpoint is stored, the run is marked interrupted, the
    summary is printed. A second signal, or 20 s passing, stops at once (what is queued is still written).

    Chosen episodes are recorded step by step into the database with their episode (every agent up to
    recording.max_agents): every recording.every-th, the first at each curriculum stage, the session's last
    planned one and --record-episodes; see `recordings` and `replay --steps/--play`, and \\[recording] in
    configs/default.toml.

    --name and --tag label the run (`runs --tag`, `compare --tag`); on --resume they rename and add tags.

    --seeds 0-4 trains the same config once per seed, one run and one `train` process each, one after another
    or --parallel K at once, every run tagged with one new group tag (and --tag's); each process's lines are
    prefixed with its seed, and a summary names each seed's run. Ctrl-C or SIGTERM stops every process cleanly
    after its episode (a second one at once); no seed starts after it. On a cluster, one `train --seed S --tag
    G` per job into one PostgreSQL database groups the same way.

    --live HOST:PORT streams each episode's envelope to websocket clients (see `watch`). The stream is
    unauthenticated: bind 127.0.0.1 (a warning is printed for any other address).

    A slow client never stalls training: its oldest queued envelopes are dropped and counted.

    Every episode is written to --db; a new database is created, an older one must be upgraded first.
    When the database is busy (a lock held by another process, a full disk, a server restarting) the
    writer retries and training goes on until training.write_queue episodes wait; then training waits,
    saying so on the progress line. Nothing is dropped: on Ctrl-C the summary names what was not written.

    Every training.checkpoint_every episodes and when the session ends (finished or Ctrl-C) the whole learner
    is stored in the database with its episode: networks, optimiser, epsilon, replay buffer, curriculum,
    registry and random generators. The newest training.checkpoints_kept stay (configs/default.toml).

    --resume RUN continues a stopped run from its last checkpoint exactly: on CPU, 20 episodes plus a resume
    of 10 store the same telemetry as 30 in one go. If the run has episodes after that checkpoint (its process
    was killed), they are deleted and trained again in full, then --episodes more follow; the command says so.
    A resume never shrinks a run.

    Every checkpoint is checked before it is loaded (its size and sha256 digest, then its structure and
    shapes against the trainer's). A damaged one is refused in one line, exit 2, changing nothing: choose
    --from-checkpoint EPISODE (an older, intact checkpoint; the command names it) or --fresh-learner.

    A run without a checkpoint (trained before townlet 0.4) resumes after its last episode with a fresh learner.
    The run's stored settings hold: --agents, --seed or a --config that contradicts them is refused (--episodes,
    --device and training.threads/write_queue/checkpoint_every/checkpoints_kept may change). A checkpoint from
    another device type needs an explicit --device. A run another process is training is refused.

    Example: townlet-telemetry train --episodes 30 --agents 8 --seed 0 --device cpu
    """
    from townlet.config import keys_set_by, load_config, with_overrides  # frozen dataclasses: only train needs them

    if seeds is not None:
        _refuse_with_seeds(seed=seed, resume=resume, live=live)
    elif parallel != 1:
        raise typer.BadParameter("--parallel K trains K of --seeds at once: add --seeds, e.g. --seeds 0-4")

    flags = {"episodes": episodes, "agents": agents, "seed": seed, "device": device}
    settings = with_overrides(load_config(config), "training", **flags)
    explicit = {f"training.{k}" for k, v in flags.items() if v is not None}
    if config is not None:
        explicit |= keys_set_by(config)
    if record_episodes is not None:
        asked = parse_episode_list(record_episodes, "--record-episodes")
        current = settings.recording.episodes
        settings = with_overrides(settings, "recording", episodes=tuple(sorted({*current, *asked})))
        explicit.add("recording.episodes")
    if seeds is not None:
        from townlet.persistence.run_labels import checked_tags

        checked_tags(tag or ())
        passed_on = {"episodes": episodes, "agents": agents, "device": device, "config": config, "db": db,
                     "record_episodes": record_episodes, "name": name, "tag": tag, "log_every": log_every}  # fmt: skip
        raise typer.Exit(code=_train_seeds(seeds, parallel, settings.training.agents, passed_on))
    from townlet.telemetry.live import parse_address

    live_address = parse_address(live) if live is not None else None
    if resume is None and (from_checkpoint is not None or fresh_learner):
        raise typer.BadParameter("--from-checkpoint and --fresh-learner choose how --resume RUN continues: add it")
    if from_checkpoint is not None and fresh_learner:
        raise typer.BadParameter("--from-checkpoint and --fresh-learner exclude each other: choose one")
    from townlet.training.interrupt import StopAfterEpisode  # torch is imported only by commands that train
    from townlet.training.session import LearnerChoice, TrainingSession

    console = make_console(stderr=True)  # train's output is all status: stdout stays empty
    if live_address is not None:
        warn_if_reachable(console, "--live", live_address[0], "stream", "episode")
    session = TrainingSession(
        settings,
        db=db,
        live=live_address,
        resume=resume,
        learner=LearnerChoice(from_checkpoint=from_checkpoint, fresh=fresh_learner),
        on_live_start=lambda url: console.print(f"live telemetry on {url} (watch with: townlet-telemetry watch {url})"),
        explicit=explicit,
        name=name,
        tags=tag or (),
    )
    t = session.config.training
    first = session.result.first_episode
    verb = f"resuming run {session.result.run} at episode {first}:" if resume is not None else "training"
    replaced = session.result.replaced
    count = (
        f"{counted(session.result.planned, 'episode')} ({replaced} trained again, then {t.episodes} new)"
        if replaced
        else counted(t.episodes, "episode")
    )
    console.print(
        f"{verb} {counted(t.agents, 'agent')} for {count} on {session.trainer.device} "
        f"({counted(session.trainer.threads, 'thread')}, seed {t.seed}), "
        f"run {session.result.run} in {session.store.label}"
    )
    for notice in session.result.notices:
        console.print(notice, style="yellow")
    with StopAfterEpisode() as stop:
        result, pending_change = _train_with_progress(session, stop, console, log_every)
        # After SIGHUP the terminal may be gone: the summary is then lost, never the run's state (already saved).
        with contextlib.suppress(OSError):
            _print_summary(console, result, stop.name if stop.requested else None)
            if pending_change is not None:
                console.print(
                    f"after this session's last episode the curriculum moved on: {pending_change}; "
                    f"train --resume {result.run} trains there",
                    markup=False,
                    highlight=False,
                )
            if stop.requested:
                status = f"marked {result.status}" if result.status_saved else "status not saved"
                unwritten = f", {len(result.unwritten)} not written" if result.unwritten else ""
                written = f"{counted(result.written, 'episode')} written{unwritten}"
                typer.echo(f"interrupted by {stop.how}: run {result.run} {status}, {written}", err=True)
    if stop.requested:
        raise typer.Exit(code=stop.exit_code)


def _refuse_with_seeds(*, seed: int | None, resume: int | None, live: str | None) -> None:
    if seed is not None:
        raise typer.BadParameter("--seeds names every seed to train: drop --seed, or --seeds")
    if resume is not None:
        raise typer.BadParameter("--seeds starts new runs: resume each with train --resume RUN")
    if live is not None:
        raise typer.BadParameter("--live streams one run: drop it with --seeds (serve --live follows one trainer)")


def _train_seeds(text: str, parallel: int, agents: int, given: dict[str, object]) -> int:
    """Train one child process per seed (``train_seeds``) with the ``given`` flags passed on, then say which
    run each seed became."""
    from townlet.persistence.reader import TelemetryReader
    from townlet_cli.train_seeds import describe, group_tag, parse_seeds, run_seeds

    seed_list = parse_seeds(text)
    tag = group_tag()
    args: list[str] = []
    passed_on = (("--episodes", "episodes"), ("--agents", "agents"), ("--device", "device"), ("--config", "config"),
                 ("--record-episodes", "record_episodes"), ("--name", "name"))  # fmt: skip
    for flag, key in passed_on:
        if given[key] is not None:
            args += [flag, str(given[key])]
    for extra in [*(given["tag"] or ()), tag]:  # type: ignore[union-attr]
        args += ["--tag", str(extra)]
    args += ["--db", str(given["db"]), "--log-every", str(given["log_every"])]
    console = make_console(stderr=True)
    at_once = min(parallel, len(seed_list))
    console.print(
        f"training {counted(len(seed_list), 'seed')} ({', '.join(map(str, seed_list))}) of one config, "
        f"{counted(agents, 'agent')} each, {at_once} at a time, tagged {tag}",
        markup=False,
        highlight=False,
    )
    outcome = run_seeds(args, seed_list, at_once)
    runs_by_seed: dict[int, int] = {}
    try:
        with TelemetryReader(str(given["db"])) as reader:
            runs_by_seed = {run.seed: run.id for run in reader.runs() if tag in run.tags}
    except TelemetryError as exc:  # no seed got as far as its run: the children said why
        console.print(f"no run of the group can be listed: {exc}", markup=False, highlight=False)
    for line in describe(outcome, runs_by_seed, tag):
        console.print(line, markup=False, highlight=False)
    return outcome.exit_code


def _train_with_progress(
    session: "TrainingSession", stop: "StopAfterEpisode", console: "Console", log_every: int
) -> "tuple[SessionResult, str | None]":
    """Run the session under a progress display; returns once training has ended and Ctrl-C is settled, with
    the stage change that takes effect after the session's last episode (for the summary), if any."""
    from townlet_cli.train_progress import TrainProgress, log_interval

    planned = session.result.planned
    every = log_interval(log_every, planned)
    with TrainProgress(console, first=session.result.first_episode, planned=planned, every=every) as progress:

        def on_episode(report: "EpisodeReport") -> None:
            progress.episode(report, session.writer.status(), session_ends=stop.requested)

        try:
            result = session.run(stop=stop, on_episode=on_episode, on_wait=progress.wait)
        except KeyboardInterrupt:  # the second Ctrl-C: the session has flushed what it could and closed
            result = session.result
            stop.requested = True
        stop.settle()  # a late Ctrl-C must not cut the bar's last frame or the summary in half
    return result, progress.pending_change


def _print_summary(console: "Console", result: "SessionResult", stopped_by: str | None) -> None:
    from rich.table import Table

    reports = result.reports
    _print_unwritten(console, result)
    if not reports:
        console.print(f"no episode finished; run {result.run} marked {result.status}")
        return
    first, last = reports[0], reports[-1]
    stopped = f" (stopped by {stopped_by or 'Ctrl-C'})" if result.status == "interrupted" else ""
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
        f"run {result.run} {result.status}: {counted(result.written, 'episode')} written, "
        f"writer blocked training {result.writer_blocked_s:.2f}s"
    )
    if result.live_published:
        console.print(
            f"live stream: {counted(result.live_published, 'envelope')}, {counted(result.live_clients, 'client')}, "
            f"{result.live_dropped} dropped for slow clients"
            + (f"; live grid: {counted(result.live_frames, 'frame')}, {result.live_frames_dropped} dropped"
               if result.live_frames else "")
        )  # fmt: skip
    if result.checkpoint is not None and result.checkpoint_stored:
        episode, size = result.checkpoint
        console.print(
            f"learner checkpoint after episode {episode} stored ({size / 1e6:.1f} MB): "
            f"continue with townlet-telemetry train --resume {result.run}"
        )
    console.print(f"{counted(len(reports), 'episode')} in {sum(r.duration_s for r in reports):.1f}s")


def _print_unwritten(console: "Console", result: "SessionResult") -> None:
    from townlet.persistence.errors import FAULT_WORDS

    if result.unwritten:
        episodes = ", ".join(map(str, result.unwritten))
        console.print(
            f"{counted(len(result.unwritten), 'episode')} could not be written "
            f"({FAULT_WORDS[result.database_state][1]}): {episodes}",
            style="red",
        )
    if result.in_flight is not None:
        console.print(
            f"episode {result.in_flight} was being written when training stopped: it may or may not be stored "
            f"(see townlet-telemetry episodes --run {result.run} --last 1)",
            style="red",
        )
    if not result.status_saved:
        console.print(
            f"run {result.run}'s status could not be saved ({FAULT_WORDS[result.database_state][0]}): it still says "
            "running (listed stale once this process has exited)"
        )


def parse_episode_list(text: str, flag: str) -> list[int]:
    """``1,50,100`` -> episode numbers; anything else is a one-line error naming the flag."""
    from townlet.errors import ConfigError

    episodes = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise ConfigError(f"{flag} takes episode numbers >= 1 separated by commas (e.g. 1,50,100), got {part!r}")
        episodes.append(int(part))
    return episodes
