"""Episode recordings in the database (revision 0006): written with their episode, listed, read, verified.

``insert_recording`` runs inside the episode's own transaction (whole or absent) and encodes each agent's
blob there, in the writer thread. The SQL text below is what ``TelemetryReader`` runs on SQLite and
PostgreSQL alike. ``recording_differences`` checks a recording against its episode's agent rows: what
``db check`` reports for every recorded episode.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from townlet.telemetry.recording import AgentRecording, EpisodeRecording, RecordingHeader
from townlet.telemetry.recording_codec import RecordingDamaged, decode_agent, encode_agent

if TYPE_CHECKING:  # the read path (stdlib sqlite3) never imports SQLAlchemy
    from sqlalchemy import Connection

__all__ = ["RecordingDamaged"]


def insert_recording(c: "Connection", episode_pk: int, recording: EpisodeRecording) -> int:
    """The recording's row and one blob per agent, in the caller's transaction; returns the bytes stored."""
    from sqlalchemy import insert

    from townlet.persistence.models import RECORDING_AGENTS, RECORDINGS

    header = recording.header
    blobs = [(a.agent_idx, a.steps, encode_agent(a, header.initial_meters)) for a in recording.agents]
    size = sum(len(blob) for _, _, blob in blobs)
    c.execute(
        insert(RECORDINGS),
        {
            "episode_pk": episode_pk,
            "format": header.format,
            "reasons": ",".join(header.reasons),
            "agents": len(blobs),
            "steps": header.steps,
            "agent_steps": sum(steps for _, steps, _ in blobs),
            "size_bytes": size,
            "header": header.to_dict(),
        },
    )
    if blobs:
        c.execute(
            insert(RECORDING_AGENTS),
            [{"episode_pk": episode_pk, "agent_idx": a, "steps": s, "blob": b} for a, s, b in blobs],
        )
    return size


#: ``recordings --run R``: one row per recorded episode of run ``:run``, oldest first.
LIST_SQL = """
SELECT e.episode, r.reasons, r.agents, r.steps, r.agent_steps, r.size_bytes, r.format, e.curriculum_stage
FROM recordings r JOIN episodes e ON e.id = r.episode_pk WHERE e.run_id = :run ORDER BY e.episode
"""
#: The header of run ``:run``'s episode ``:episode`` (no row: not recorded).
HEADER_SQL = """
SELECT r.header, r.format FROM recordings r JOIN episodes e ON e.id = r.episode_pk
WHERE e.run_id = :run AND e.episode = :episode
"""
#: One recorded agent's blob (no row: that agent was not recorded).
AGENT_SQL = """
SELECT a.blob FROM recording_agents a JOIN episodes e ON e.id = a.episode_pk
WHERE e.run_id = :run AND e.episode = :episode AND a.agent_idx = :agent
"""
#: Every recorded agent's blob of one episode, in agent order.
AGENTS_SQL = """
SELECT a.agent_idx, a.blob FROM recording_agents a JOIN episodes e ON e.id = a.episode_pk
WHERE e.run_id = :run AND e.episode = :episode ORDER BY a.agent_idx
"""
#: Each recorded agent of run ``:run`` beside its agent row: what ``recording_differences`` compares.
CHECK_SQL = """
SELECT e.episode, r.header, a.agent_idx, a.blob, s.survival_steps, s.death_cause, s.episode_reward,
       s.meter_energy, s.meter_hygiene, s.meter_satiation, s.meter_money,
       s.visits_bed, s.visits_shower, s.visits_fridge, s.visits_job
FROM recordings r JOIN episodes e ON e.id = r.episode_pk
JOIN recording_agents a ON a.episode_pk = r.episode_pk
LEFT JOIN agent_snapshots s ON s.episode_pk = a.episode_pk AND s.agent_idx = a.agent_idx
WHERE e.run_id = :run ORDER BY e.episode, a.agent_idx
"""


@dataclass(frozen=True, slots=True)
class RecordingSummary:
    """One recorded episode as ``recordings`` lists it."""

    episode: int
    reasons: tuple[str, ...]
    agents: int
    steps: int
    agent_steps: int
    size_bytes: int
    format: int
    stage: int

    @property
    def bytes_per_agent_step(self) -> float | None:
        return round(self.size_bytes / self.agent_steps, 3) if self.agent_steps else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent_steps": self.agent_steps,
            "agents": self.agents,
            "bytes": self.size_bytes,
            "bytes_per_agent_step": self.bytes_per_agent_step,
            "episode": self.episode,
            "format": self.format,
            "reasons": list(self.reasons),
            "stage": self.stage,
            "steps": self.steps,
        }


def recordings_report(run: int, found: list[RecordingSummary]) -> dict[str, Any]:
    """``recordings --json`` and the dashboard's ``/recordings``: one document, the same bytes."""
    return {"run": run, "recordings": [r.to_dict() for r in found]}


def summary(row: tuple[Any, ...]) -> RecordingSummary:
    episode, reasons, agents, steps, agent_steps, size, fmt, stage = row
    return RecordingSummary(episode, tuple(reasons.split(",")) if reasons else (), agents, steps, agent_steps, size,
                            fmt, stage)  # fmt: skip


def header(value: Any) -> RecordingHeader:
    """A stored header (JSON text on SQLite, already a dict through psycopg) -> the DTO."""
    return RecordingHeader.from_dict(json.loads(value) if isinstance(value, str) else value)


def decode(blob: Any, agent: int, head: RecordingHeader, where: str) -> AgentRecording:
    return decode_agent(bytes(blob), agent, head.initial_meters, where)


#: Agent-row fields a recording's last step must agree with.
FINAL_METERS = ("meter_energy", "meter_hygiene", "meter_satiation", "meter_money")
VISITS = ("bed", "shower", "fridge", "job")


def recording_differences(run: int, rows: list[tuple[Any, ...]]) -> Iterator[str]:
    """One line per recorded agent that disagrees with its stored agent row (or does not decode)."""
    for episode, stored_header, agent, blob, survival, cause, reward, *rest in rows:
        where = f"run {run} episode {episode} agent {agent}"
        try:
            head = header(stored_header)
            steps = decode(blob, agent, head, where)
        except (RecordingDamaged, KeyError, TypeError, ValueError) as exc:
            yield str(exc) if isinstance(exc, RecordingDamaged) else f"{where}: the recording header is damaged"
            continue
        if survival is None:
            yield f"{where}: recorded, but the episode has no row for that agent"
            continue
        meters, visits = rest[:4], rest[4:]
        problems = []
        if steps.steps != survival:
            problems.append(f"{steps.steps} steps recorded, survival {survival}")
        if steps.death_cause != cause:
            problems.append(f"ends by {steps.death_cause}, the row says {cause}")
        if steps.steps and abs(sum(steps.rewards) - reward) > 1e-3 * max(1.0, abs(reward)):
            problems.append(f"rewards add up to {sum(steps.rewards):g}, the row says {reward:g}")
        final = [series[-1] for series in steps.meters] if steps.steps else list(head.initial_meters)
        if final != list(meters):
            problems.append(f"final meters {final}, the row says {list(meters)}")
        if visits[0] is not None:
            used = [steps.affordances.count(i) for i in range(len(VISITS))]
            if used != list(visits):
                problems.append(f"affordance uses {used}, the row's visits {list(visits)}")
        if problems:
            yield f"{where}: " + "; ".join(problems)
