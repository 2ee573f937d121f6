"""The JSON answers of the read side, built in one place: the CLI's ``--json`` and the web server's endpoints.

Each function takes an open ``TelemetryReader`` and returns plain Python values; the callers only encode
them (``townlet.telemetry.payloads.encode``), so ``townlet-telemetry audit baselines --json`` and
``GET /api/runs/1/baselines`` carry the same bytes.
"""

from collections.abc import Sequence
from typing import Any

from townlet.audit.baselines import COLUMNS as BASELINE_COLUMNS
from townlet.audit.baselines import JURY, AgentBaselines, Thresholds, audit_run
from townlet.audit.visits import AFFORDANCES, AgentVisits, audit_visits
from townlet.persistence.reader import EpisodeSummary, RunSummary, TelemetryReader
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


def baselines_audits(
    reader: TelemetryReader, run: RunSummary, thresholds: Thresholds, agent: int | None = None
) -> list[AgentBaselines]:
    """Every agent's baseline audit, or one agent's (read with the jury it is compared with)."""
    agents = None if agent is None else sorted({agent, *(j for j in JURY if j < run.num_agents)})
    return audit_run(reader.agent_columns(run, BASELINE_COLUMNS, agents), thresholds, only=agent)


def baselines_report(run: RunSummary, thresholds: Thresholds, audits: list[AgentBaselines]) -> dict[str, Any]:
    """``audit baselines --json``."""
    return {
        "run": run.id,
        "run_id": run.run_uuid,
        "thresholds": {"below": thresholds.below, "streak": thresholds.streak},
        "agents": [a.to_dict() for a in audits],
    }


def flags_report(run: RunSummary, thresholds: Thresholds, audits: list[AgentBaselines]) -> dict[str, Any]:
    """The baseline flags of a run without the trajectories (what a run overview needs, small at any size)."""
    return {
        "run": run.id,
        "run_id": run.run_uuid,
        "thresholds": {"below": thresholds.below, "streak": thresholds.streak},
        "flags": [{"agent_idx": a.agent_idx, **flag.to_dict()} for a in audits for flag in a.flags],
    }


def rewards_report(reader: TelemetryReader, run: RunSummary, episode: int | None = None) -> dict[str, Any]:
    """``audit rewards --json``: every stored reward recomputed with ``RewardStrategy`` (loads torch)."""
    from townlet.audit.rewards import find_mismatches

    checked = 0
    mismatches = []
    for _, agents in reader.agent_payloads(run, episode=episode):
        checked += len(agents)
        mismatches.extend(find_mismatches([agents]))
    if episode is not None and not checked:
        reader.episode_agents(run, episode)  # raises the one-line error for an episode that is not there
    return {"run": run.id, "episode": episode, "checked": checked, "mismatches": [m.to_dict() for m in mismatches]}


def visits_audits(reader: TelemetryReader, run: RunSummary, agent: int | None = None) -> list[AgentVisits]:
    return audit_visits(reader.agent_columns(run, VISIT_FIELDS, None if agent is None else [agent]))


def visits_report(run: RunSummary, audits: list[AgentVisits]) -> dict[str, Any]:
    """``audit visits --json``."""
    return {
        "run": run.id,
        "run_id": run.run_uuid,
        "affordances": list(AFFORDANCES),
        "episodes_without_visits": max((a.missing for a in audits), default=0),
        "agents": [a.to_dict() for a in audits],
    }
