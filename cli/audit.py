"""``townlet-telemetry audit``: questions about a run's reward baselines and rewards, answered from the tables."""

from typing import Annotated

import typer

from townlet.audit.baselines import (
    BELOW_BASELINE,
    DISAGREES,
    WITHOUT_STAGE_CHANGE,
    AgentBaselines,
    Thresholds,
)
from townlet.audit.baselines import COLUMNS as BASELINE_COLUMNS
from townlet.audit.reports import (
    baselines_audits,
    baselines_report,
    rewards_report,
    visits_audits,
    visits_report,
)
from townlet.audit.visits import AFFORDANCES, AgentVisits
from townlet.persistence.reader import RunSummary, TelemetryReader
from townlet.telemetry.dto import VISIT_FIELDS
from townlet.wording import counted
from townlet_cli.console import make_console
from townlet_cli.options import DEFAULT, AgentOption, AtLeast, CsvFlag, DbOption, JsonFlag, RunOption
from townlet_cli.output import fmt, machine_format, write_csv, write_json

app = typer.Typer(
    help=(
        "Audit a run's reward baselines, rewards and affordance visits from the stored tables.\n\n"
        "Example: townlet-telemetry audit baselines --run 1 --agent 3"
    ),
    no_args_is_help=True,
)

BASELINES_HELP = (
    "The baseline-survival trajectory of every agent (or one) across a run, with curriculum stage changes, a "
    "sparkline per agent (baseline and survival), and flagged anomalies.\n\n"
    f"{WITHOUT_STAGE_CHANGE}: the agent's baseline moved between two episodes at the same curriculum stage "
    "(only a stage change may move it).\n\n"
    f"{DISAGREES}: the agent's baseline differs, in the same episode at the same stage, from the value at least "
    "two of agents 0, 1 and 2 hold (agent 0's when all three differ): the agents of one run share one curriculum, "
    "so they should share the baseline.\n\n"
    f"{BELOW_BASELINE}: the agent survived fewer than --below x baseline steps for --streak episodes in a row "
    "(reported once per streak).\n\n"
    "--json: per agent, its episodes, stages, baselines, survival, action entropy (null for episodes written "
    "under schema version 1), stage changes and flags. "
    "--csv: one row per agent and episode, with the entropy and the flags raised there.\n\n"
    "Example: townlet-telemetry audit baselines --run 1 --agent 3 --streak 10"
)

SHOWN_FLAGS = 20
CSV_HEADER = ("agent_idx", "episode", *BASELINE_COLUMNS, "flags")


@app.command(help=BASELINES_HELP)
def baselines(
    db: DbOption = DEFAULT,
    run: RunOption = None,
    agent: AgentOption = None,
    below: Annotated[
        float, typer.Option("--below", help="Survival under this fraction of baseline counts as far below.", min=0.0)
    ] = 0.5,
    streak: Annotated[
        int,
        typer.Option(
            "--streak", help="Episodes in a row far below baseline before it is flagged.", click_type=AtLeast(1)
        ),
    ] = 5,
    as_json: JsonFlag = False,
    as_csv: CsvFlag = False,
) -> None:
    """Audit baseline trajectories (help: BASELINES_HELP)."""
    output = machine_format(as_json, as_csv)
    thresholds = Thresholds(below=below, streak=streak)
    # The table of a whole run keeps a summary per agent (memory O(agents)); --json/--csv, and one agent, keep
    # the trajectories they print.
    bars = sparkline_width(make_console().width) if output is None and agent is None else None
    with TelemetryReader(db) as reader:
        chosen = reader.run(run)
        # One agent: its rows and the jury's, a few primary-key lookups per episode.
        audits = baselines_audits(reader, chosen, thresholds, agent, summary_bars=bars)
    if output == "json":
        write_json(baselines_report(chosen, thresholds, audits))
    elif output == "csv":
        write_csv(CSV_HEADER, _csv_rows(audits))
    else:
        _baselines_table(reader.label, chosen, audits)


def _csv_rows(audits: list[AgentBaselines]):  # noqa: ANN202 (a generator of CSV rows)
    for audit in audits:
        flagged: dict[int, list[str]] = {}
        for flag in audit.flags:
            flagged.setdefault(flag.episode, []).append(flag.flag)
        for episode, stage, baseline, survival, entropy in zip(
            audit.episodes, audit.stages, audit.baselines, audit.survival, audit.entropy, strict=True
        ):
            flags = ";".join(flagged.get(episode, ()))
            yield (audit.agent_idx, episode, stage, baseline, survival, "" if entropy is None else entropy, flags)


#: Widths the audit tables give their text columns before the sparklines take the rest of the terminal.
AGENT_W, SPAN_W, CHANGES_W, FLAGS_W = 5, 15, 18, 14
#: The "b "/"s " label before each baselines sparkline; the fewest bars a sparkline is drawn with.
LABEL_W, MIN_SPARK = 2, 8


def bars_that_fit(terminal_width: int, *, columns: int, text: int, sparklines: int, label: int = 0) -> int:
    """How many bars each of ``sparklines`` side-by-side sparklines gets in a rich table of ``columns``
    columns (3 characters of border and padding each, plus 1), after ``text`` characters of other columns."""
    free = terminal_width - (columns * 3 + 1) - text
    return max(MIN_SPARK, free // sparklines - label)


def sparkline_width(terminal_width: int) -> int:
    """Bars of the baselines table's trajectory column."""
    return bars_that_fit(
        terminal_width, columns=5, text=AGENT_W + SPAN_W + CHANGES_W + FLAGS_W, sparklines=1, label=LABEL_W
    )


def _baselines_table(label: str, run: RunSummary, audits: list[AgentBaselines]) -> None:
    from rich.table import Table

    console = make_console()
    width = sparkline_width(console.width)
    per = (
        f"a bar per {run.episodes / width:.1f} episodes, averaged ({width} bars)"
        if run.episodes > width
        else "a bar per episode"
    )
    table = Table(
        title=f"baselines of run {run.id} in {label} ({counted(run.episodes, 'episode')})",
        caption=f"b baseline, s survival: {per}",
    )
    table.add_column("agent", justify="right", width=AGENT_W)
    table.add_column("baseline", width=SPAN_W, overflow="fold")
    table.add_column("trajectory", no_wrap=True, min_width=min(width, run.episodes) + LABEL_W)
    table.add_column("stage changes", width=CHANGES_W, overflow="fold")
    table.add_column("flags", width=FLAGS_W, overflow="fold")
    for audit in audits:
        changes = ", ".join(f"{c['from']}→{c['to']}@{c['episode']}" for c in audit.stage_changes) or "none"
        span = f"{fmt(audit.first_baseline)} → {fmt(audit.last_baseline)}" if audit.count else ""
        flags = ", ".join(sorted({f.flag for f in audit.flags})) or "none"
        table.add_row(
            str(audit.agent_idx),
            f"{span}\n{counted(audit.count, 'episode')}",
            f"b {audit.sparkline(width)}\ns {audit.survival_sparkline(width)}",
            changes,
            f"[red]{flags}[/]" if audit.flags else flags,
        )
    console.print(table, soft_wrap=False)  # the title wraps to the table
    raised = [(a.agent_idx, f) for a in audits for f in a.flags]
    for agent, flag in raised[:SHOWN_FLAGS]:
        console.print(f"agent {agent} episode {flag.episode}: {flag.flag}: {flag.detail}", markup=False)
    if len(raised) > SHOWN_FLAGS:
        console.print(f"... and {len(raised) - SHOWN_FLAGS} more flags (--json or --csv lists them all)")
    if not raised:
        console.print("no flags raised")


@app.command()
def rewards(
    db: DbOption = DEFAULT,
    run: RunOption = None,
    episode: Annotated[
        int | None, typer.Option("--episode", "-e", help="Only this episode.", click_type=AtLeast(1))
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Recompute every stored reward with the project's RewardStrategy; exit code 1 on any mismatch, else 0.

    Each reward is recomputed from the stored survival steps, episode end and baseline. A mismatch means
    the reward path and the baseline in the registry disagreed when the episode ran, or the row was changed
    since. This command loads torch (it runs the real RewardStrategy); the other read commands do not.

    Example: townlet-telemetry audit rewards --run 1
    """
    with TelemetryReader(db) as reader:
        chosen = reader.run(run)
        report = rewards_report(reader, chosen, episode)
    scope = f"run {chosen.id}" + (f" episode {episode}" if episode is not None else "")
    checked, mismatches = report["checked"], report["mismatches"]
    if as_json:
        write_json(report)
    else:
        console = make_console()
        for m in mismatches[:SHOWN_FLAGS]:
            console.print(
                f"episode {m['episode']} agent {m['agent_idx']}: stored reward {m['stored_reward']!r}, expected "
                f"{m['expected_reward']!r} (survival {m['survival_steps']}, {m['death_cause']}, "
                f"baseline {m['baseline_survival_steps']!r})",
                markup=False,
            )
        if len(mismatches) > SHOWN_FLAGS:
            console.print(f"... and {len(mismatches) - SHOWN_FLAGS} more (--json lists them all)")
        verdict = counted(len(mismatches), "mismatch", "mismatches") if mismatches else "every reward matches"
        console.print(f"{scope} in {reader.label}: {counted(checked, 'reward')} checked, {verdict}")
    if mismatches:
        raise typer.Exit(code=1)


VISITS_HELP = (
    "How often each agent used each affordance (a successful interact on its cell: "
    f"{', '.join(AFFORDANCES)}), episode by episode across a run.\n\n"
    "The table has one row per agent and one column per affordance: a sparkline of the visits per episode "
    "(from 0 to that agent's most visits in one episode) and the mean visits per episode. Episodes written "
    "under schema version 1 have no visit counts: they are counted in the caption and left out, never read as zero.\n\n"
    "--json: per agent, its episodes, the visits per affordance (one count per episode) and the totals. "
    "--csv: one row per agent and episode.\n\n"
    "Example: townlet-telemetry audit visits --run 1 --agent 3 --csv"
)


@app.command(help=VISITS_HELP)
def visits(
    db: DbOption = DEFAULT,
    run: RunOption = None,
    agent: AgentOption = None,
    as_json: JsonFlag = False,
    as_csv: CsvFlag = False,
) -> None:
    """Audit affordance visits (help: VISITS_HELP)."""
    output = machine_format(as_json, as_csv)
    bars = _visits_bars(make_console().width) if output is None else None  # the table keeps summaries only
    with TelemetryReader(db) as reader:
        chosen = reader.run(run)
        audits = visits_audits(reader, chosen, agent, summary_bars=bars)
    missing = max((a.missing for a in audits), default=0)
    if output == "json":
        write_json(visits_report(chosen, audits))
    elif output == "csv":
        rows = (
            (a.agent_idx, episode, *(a.visits[name][i] for name in AFFORDANCES))
            for a in audits
            for i, episode in enumerate(a.episodes)
        )
        write_csv(("agent_idx", "episode", *VISIT_FIELDS), rows)
    else:
        _visits_table(reader.label, chosen, audits, missing)


def _visits_bars(terminal_width: int) -> int:
    """Bars of each affordance's sparkline in the visits table."""
    return bars_that_fit(terminal_width, columns=1 + len(AFFORDANCES), text=AGENT_W, sparklines=len(AFFORDANCES))


def _visits_table(label: str, run: RunSummary, audits: list[AgentVisits], missing: int) -> None:
    from rich.table import Table

    shown = audits[0].count if audits else 0
    console = make_console()
    width = _visits_bars(console.width)
    table = Table()
    table.add_column("agent", justify="right", width=AGENT_W)
    for name in AFFORDANCES:
        table.add_column(name, no_wrap=True, min_width=min(width, shown))
    for audit in audits:
        cells = [f"{audit.sparkline(name, width)}\nmean {fmt(round(audit.mean(name), 2))}" for name in AFFORDANCES]
        table.add_row(str(audit.agent_idx), *cells)
    # Title and note as lines of their own, wrapped to the terminal: the table is as narrow as its bars.
    console.print(
        f"affordance visits of run {run.id} in {label}: per episode, then the mean ({counted(shown, 'episode')})",
        soft_wrap=False,
        markup=False,
    )
    console.print(table)
    if missing:
        console.print(
            f"{counted(missing, 'episode')} written under schema version 1 have no visit counts", soft_wrap=False
        )
