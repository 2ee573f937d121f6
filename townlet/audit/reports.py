"""The JSON answers of the read side, built in one place: the CLI's ``--json`` and the web server's endpoints.

Each function takes an open ``TelemetryReader`` and returns plain Python values; the callers only encode
them (``townlet.telemetry.payloads.encode``), so ``townlet-telemetry audit baselines --json`` and
``GET /api/runs/1/baselines`` carry the same bytes.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from townlet.analysis.run_selection import flatten
from townlet.audit.baselines import COLUMNS as BASELINE_COLUMNS
from townlet.audit.baselines import JURY, AgentBaselines, Flag, Thresholds, audit_run
from townlet.audit.visits import AFFORDANCES, AgentVisits, audit_visits
from townlet.persistence.reader import EpisodeBucket, EpisodeSummary, RunSummary, TelemetryReader
from townlet.telemetry.dto import VISIT_FIELDS


def runs_report(runs: Sequence[RunSummary]) -> list[dict[str, Any]]:
    """``runs --json``: every run, oldest first."""
    return [run._asdict() for run in runs]


#: ``episodes --csv``'s columns: the run, then every field of an episode's summary.
EPISODE_COLUMNS = ("run", *EpisodeSummary._fields)


def episodes_report(run: int, episodes: Sequence[EpisodeSummary]) -> list[dict[str, Any]]:
    """``episodes --json``: per episode, its run and the agents' survival, reward, baseline and epsilon
    aggregated."""
    return [{"run": run, **row._asdict()} for row in episodes]


#: ``episodes --points --csv``'s columns: the run, then every field of a bucket.
BUCKET_COLUMNS = ("run", *EpisodeBucket._fields)


def buckets_report(run: int, buckets: Sequence[EpisodeBucket]) -> list[dict[str, Any]]:
    """``episodes --points --json`` and the run page's charts: consecutive episodes summarised per bucket."""
    return [{"run": run, **row._asdict()} for row in buckets]


def baselines_audits(
    reader: TelemetryReader,
    run: RunSummary,
    thresholds: Thresholds,
    agent: int | None = None,
    summary_bars: int | None = None,
) -> list[AgentBaselines]:
    """Every agent's baseline audit, or one agent's (read with the jury it is compared with). With
    ``summary_bars``, each agent keeps a summary with sparklines of that many bars, not its trajectory:
    memory O(agents) whatever the run's length (the table, the flags)."""
    agents = None if agent is None else sorted({agent, *(j for j in JURY if j < run.num_agents)})
    bars = None if summary_bars is None else (summary_bars, run.episodes)
    return audit_run(reader.agent_columns(run, BASELINE_COLUMNS, agents), thresholds, only=agent, bars=bars)


def baselines_report(run: RunSummary, thresholds: Thresholds, audits: list[AgentBaselines]) -> dict[str, Any]:
    """``audit baselines --json``."""
    return {
        "run": run.id,
        "run_id": run.run_uuid,
        "thresholds": {"below": thresholds.below, "streak": thresholds.streak},
        "agents": [a.to_dict() for a in audits],
    }


def flags_report(run: RunSummary, thresholds: Thresholds, flags: list[tuple[int, Flag]]) -> dict[str, Any]:
    """The baseline flags of a run as ``(agent, Flag)`` without the trajectories (what a run overview needs,
    small at any size)."""
    return {
        "run": run.id,
        "run_id": run.run_uuid,
        "thresholds": {"below": thresholds.below, "streak": thresholds.streak},
        "flags": [{"agent_idx": agent, **flag.to_dict()} for agent, flag in flags],
    }


def scanned_flags(audits: list[AgentBaselines]) -> list[tuple[int, Flag]]:
    """Every agent's flags from a scan (``baselines_audits``), by agent then episode."""
    return [(audit.agent_idx, flag) for audit in audits for flag in audit.flags]


def rewards_report(reader: TelemetryReader, run: RunSummary, episode: int | None = None) -> dict[str, Any]:
    """``audit rewards --json``: every stored reward recomputed with ``RewardStrategy`` (loads torch), read as
    the four columns it needs, batch by batch (memory: one batch and the mismatches)."""
    from townlet.audit.rewards import COLUMNS, RewardCheck

    check = RewardCheck()
    mismatches = [m.to_dict() for m in check.mismatches(reader.agent_columns(run, COLUMNS, episode=episode))]
    if episode is not None and not check.checked:
        reader.episode_agents(run, episode)  # raises the one-line error for an episode that is not there
    return {"run": run.id, "episode": episode, "checked": check.checked, "mismatches": mismatches}


def visits_audits(
    reader: TelemetryReader, run: RunSummary, agent: int | None = None, summary_bars: int | None = None
) -> list[AgentVisits]:
    """Every agent's visits (or one agent's); with ``summary_bars``, summaries with sparklines of that many
    bars instead of the counts per episode (the table)."""
    bars = None if summary_bars is None else (summary_bars, reader.episodes_with_visits(run))
    return audit_visits(reader.agent_columns(run, VISIT_FIELDS, None if agent is None else [agent]), bars)


def visits_report(run: RunSummary, audits: list[AgentVisits]) -> dict[str, Any]:
    """``audit visits --json``."""
    return {
        "run": run.id,
        "run_id": run.run_uuid,
        "affordances": list(AFFORDANCES),
        "episodes_without_visits": max((a.missing for a in audits), default=0),
        "agents": [a.to_dict() for a in audits],
    }


# -- the dashboard's overviews: what tells runs apart, and which agents to look at first ---------------------

#: Settings that never tell two runs' learning apart (or have columns of their own): left out of `differs`.
NOT_DISTINGUISHING = frozenset(
    {
        "training.episodes",
        "training.seed",
        "training.agents",
        "training.device",
        "training.threads",
        "training.write_queue",
        "training.checkpoint_every",
        "training.checkpoints_kept",
    }
)
#: The agents table averages each agent over the run's final this many episodes.
AGENT_WINDOW = 10
#: Episodes further apart than this (the previous one's finish to this one's start) begin a new session: a
#: resume (a new process: imports alone take seconds), or training that waited that long for the database.
SESSION_GAP_S = 2.0


def overview_report(reader: TelemetryReader) -> list[dict[str, Any]]:
    """``GET /api/overview``: every run as ``runs --json`` lists it, newest first, plus its duration, its last
    episode's mean survival and baseline, and ``differs``: the settings whose values differ between runs."""
    runs = reader.runs()
    means = reader.last_episode_means()
    configs = {run: flatten(config) for run, config in reader.run_configs().items()}
    keys = sorted({k for c in configs.values() for k in c} - NOT_DISTINGUISHING)
    differing = [k for k in keys if len({repr(c.get(k)) for c in configs.values()}) > 1]
    answer = []
    for run in reversed(runs):
        survival, baseline = means.get(run.id, (None, None))
        answer.append(
            {
                **run._asdict(),
                "duration_s": _seconds_between(run.started_at, run.ended_at),
                "last_survival_mean": survival,
                "last_baseline_mean": baseline,
                "differs": {k: configs[run.id].get(k) for k in differing},
            }
        )
    return answer


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if start is None or end is None:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def sessions_report(reader: TelemetryReader, run: RunSummary) -> list[dict[str, Any]]:
    """``GET /api/runs/R/sessions``: where each training session of the run began (the first always), with the
    pause before it; a later one is a resume, or a wait for the database of at least ``SESSION_GAP_S``."""
    sessions: list[dict[str, Any]] = []
    previous_end: str | None = None
    for episode, start, end in reader.episode_times(run):
        gap = _seconds_between(previous_end, start)
        if previous_end is None or (gap is not None and gap >= SESSION_GAP_S):
            sessions.append({"first_episode": episode, "started_at": start, "gap_s": gap})
        previous_end = end
    return sessions


def agents_report(reader: TelemetryReader, run: RunSummary, last: int = AGENT_WINDOW) -> dict[str, Any]:
    """``GET /api/runs/R/agents``: per agent, over the run's final ``last`` episodes, mean survival, baseline,
    survival over baseline and reward, worst first by survival over baseline (then by agent)."""
    agents = [
        {
            "agent_idx": agent,
            "survival_mean": survival,
            "baseline_mean": baseline,
            "survival_over_baseline": survival / baseline if baseline else None,
            "reward_mean": reward,
            "episodes": episodes,
        }
        for agent, survival, baseline, reward, episodes in reader.agent_means(run, last)
    ]
    agents.sort(key=lambda a: (a["survival_over_baseline"] is None, a["survival_over_baseline"] or 0, a["agent_idx"]))
    return {"run": run.id, "last_episodes": last, "agents": agents}
