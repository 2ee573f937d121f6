"""Run names and tags (revision 0007), and deleting runs: what a valid label is, and the writes that change them.

A name is free text for the researcher (one line, at most ``NAME_LENGTH`` characters); a tag is a word
(``TAG_RULE``: letters, digits and ``_ . : + = -``, at most ``TAG_LENGTH``), so ``runs --tag a`` and a
comma-separated list never split one. Every check here runs before anything is written, so a refusal changes
nothing.
"""

import re
from collections.abc import Iterable
from typing import NamedTuple

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from townlet.persistence.errors import DatabaseError
from townlet.persistence.models import (
    NAME_LENGTH,
    RECORDINGS,
    RUN_TAGS,
    TAG_LENGTH,
    AgentSnapshotRow,
    CheckpointRow,
    EpisodeRow,
    RunRow,
)

RUNS, EPISODES = RunRow.__table__, EpisodeRow.__table__
AGENTS, CHECKPOINTS = AgentSnapshotRow.__table__, CheckpointRow.__table__

#: What a tag may hold: a word that survives a shell, a URL and a comma-separated list unquoted.
TAG_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+=-]*")


class BadLabel(DatabaseError):
    """A run name or tag this database cannot hold (too long, or characters a tag may not have)."""


class RunBeingTrained(DatabaseError):
    """A change refused because a process is training the run right now."""


def checked_name(name: str) -> str:
    """``name`` stripped, or a one-line refusal naming the limit."""
    text = name.strip()
    if not text or "\n" in text or "\r" in text:
        raise BadLabel("a run name must be one non-empty line: e.g. --name 'baseline lr 1e-3'")
    if len(text) > NAME_LENGTH:
        raise BadLabel(f"run name is {len(text)} characters, at most {NAME_LENGTH} are kept: shorten it")
    return text


def checked_tags(tags: Iterable[str]) -> list[str]:
    """The tags in the order given, each once; a one-line refusal for the first bad one."""
    kept: list[str] = []
    for tag in tags:
        if len(tag) > TAG_LENGTH:
            raise BadLabel(f"tag {tag[:20]!r}... is {len(tag)} characters, at most {TAG_LENGTH}: shorten it")
        if not TAG_RULE.fullmatch(tag):
            raise BadLabel(
                f"tag {tag!r} may hold only letters, digits and _ . : + = - (starting with a letter or digit): "
                "e.g. --tag lr-1e-3"
            )
        if tag not in kept:
            kept.append(tag)
    return kept


def insert_tags(connection: Connection, run: int, tags: Iterable[str]) -> list[str]:
    """Add ``tags`` the run does not have yet; returns those added."""
    have = set(connection.execute(select(RUN_TAGS.c.tag).where(RUN_TAGS.c.run_id == run)).scalars())
    new = [tag for tag in tags if tag not in have]
    if new:
        connection.execute(insert(RUN_TAGS), [{"run_id": run, "tag": tag} for tag in new])
    return new


def remove_tags(connection: Connection, run: int, tags: Iterable[str]) -> list[str]:
    """Remove those of ``tags`` the run has; returns those removed."""
    wanted = list(tags)
    have = set(connection.execute(select(RUN_TAGS.c.tag).where(RUN_TAGS.c.run_id == run)).scalars())
    gone = [tag for tag in wanted if tag in have]
    if gone:
        connection.execute(delete(RUN_TAGS).where(RUN_TAGS.c.run_id == run, RUN_TAGS.c.tag.in_(gone)))
    return gone


def set_name(connection: Connection, run: int, name: str | None) -> None:
    connection.execute(update(RUNS).where(RUNS.c.id == run).values(name=name))


class RunContents(NamedTuple):
    """What deleting one run removes, counted."""

    run: int
    episodes: int
    agent_rows: int
    checkpoints: int
    recordings: int

    def describe(self) -> str:
        from townlet.wording import counted

        parts = [
            counted(self.episodes, "episode"),
            counted(self.agent_rows, "agent row"),
            counted(self.checkpoints, "checkpoint"),
        ]
        if self.recordings:
            parts.append(counted(self.recordings, "recording"))
        return f"run {self.run} ({', '.join(parts)})"


def run_contents(connection: Connection, runs: Iterable[int]) -> list[RunContents]:
    """Each (existing) run's counts, in the order given."""
    found: list[RunContents] = []
    for run in runs:
        of_run = select(EPISODES.c.id).where(EPISODES.c.run_id == run)
        episodes = connection.execute(select(func.count()).select_from(of_run.subquery())).scalar_one()
        agent_rows = connection.execute(
            select(func.count()).select_from(AGENTS).where(AGENTS.c.episode_pk.in_(of_run))
        ).scalar_one()
        checkpoints = connection.execute(
            select(func.count()).select_from(CHECKPOINTS).where(CHECKPOINTS.c.run_id == run)
        ).scalar_one()
        recordings = connection.execute(
            select(func.count()).select_from(RECORDINGS).where(RECORDINGS.c.episode_pk.in_(of_run))
        ).scalar_one()
        found.append(RunContents(run, episodes, agent_rows, checkpoints, recordings))
    return found


def delete_runs(connection: Connection, runs: Iterable[int]) -> None:
    """Delete the runs and, by the schema's cascades, everything that belongs to them."""
    connection.execute(delete(RUNS).where(RUNS.c.id.in_(list(runs))))
