"""The baseline audit: each agent's baseline-survival trajectory across a run, and the anomalies in it.

Three flags, each one a question a researcher asks of a reward baseline:

- ``baseline-without-stage-change``: the agent's baseline differs from its previous episode's while its
  curriculum stage did not change (the baseline is a function of the stage: only a stage change may move it).
- ``baseline-disagrees``: the agent's baseline differs, in the same episode at the same stage, from the
  consensus of agents 0, 1 and 2 (the value at least two of them hold; agent 0's when all three differ).
  Every agent of a run shares one curriculum, so they should share the baseline. A small fixed jury keeps
  ``audit baselines --agent I`` at a few index lookups per episode, and one odd juror is outvoted.
- ``survival-below-baseline``: the agent survived fewer than ``below`` x baseline steps for ``streak``
  episodes in a row (reported once per streak, at the episode where it reached ``streak``).
"""

from array import array
from collections import deque
from collections.abc import Iterable
from itertools import chain, groupby
from typing import Any, NamedTuple

from townlet.audit.sparkline import Bars, sparkline

WITHOUT_STAGE_CHANGE = "baseline-without-stage-change"
DISAGREES = "baseline-disagrees"
BELOW_BASELINE = "survival-below-baseline"
FLAGS = (WITHOUT_STAGE_CHANGE, DISAGREES, BELOW_BASELINE)


class Thresholds(NamedTuple):
    """When survival counts as far below baseline: under ``below`` x baseline, ``streak`` episodes running."""

    below: float = 0.5
    streak: int = 5


class Flag(NamedTuple):
    """One anomaly of one agent at one episode."""

    flag: str
    episode: int
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"flag": self.flag, "episode": self.episode, "detail": self.detail}


#: The agents whose consensus baseline every agent is compared with.
JURY = (0, 1, 2)


def without_stage_change_detail(previous: float, baseline: float, stage: int) -> str:
    return f"{previous:g} -> {baseline:g} while stage stayed {stage}"


def disagrees_detail(baseline: float, reference: float) -> str:
    return f"{baseline:g} vs {reference:g} held by agents {', '.join(map(str, JURY))}"


def below_detail(thresholds: Thresholds, first: int) -> str:
    return f"under {thresholds.below:g} x baseline for {thresholds.streak} episodes from episode {first}"


def consensus(members: list[tuple[int, float]]) -> tuple[int, float] | None:
    """The (stage, baseline) at least two jurors hold, else the first juror's; None with fewer than two."""
    if len(members) < 2:
        return None
    for member in members:
        if members.count(member) >= 2:
            return member
    return members[0]


class AgentBaselines:
    """One agent's trajectory across a run and the flags found while it was read.

    With ``bars`` (a sparkline width and the number of episodes to come) it keeps a summary instead of the
    trajectory: the episode count, the first and last baseline, the stage changes, the flags and the
    sparklines' bars, so a whole-run audit's memory is O(agents), whatever the run's length. Without, it keeps
    every episode in compact arrays (``to_dict()``, the CSV, one agent's audit).
    """

    def __init__(self, agent_idx: int, thresholds: Thresholds, bars: tuple[int, int] | None = None) -> None:
        self.agent_idx = agent_idx
        self.thresholds = thresholds
        self.keeps_trajectory = bars is None
        self.episodes = array("q")
        self.stages = array("q")
        self.baselines = array("d")
        self.survival = array("q")
        self.entropy: list[float | None] = []  # None for episodes written before schema version 2
        self.stage_changes: list[dict[str, int]] = []
        self.flags: list[Flag] = []
        self.count = 0
        self.first_baseline: float | None = None
        self._last: tuple[int, float] | None = None  # the previous episode's (stage, baseline)
        self._recent: deque[int] = deque(maxlen=max(1, thresholds.streak))  # the last episodes, for a streak's start
        self._streak = 0
        self._bars = None if bars is None else (Bars(bars[1], bars[0]), Bars(bars[1], bars[0]))

    @property
    def last_baseline(self) -> float | None:
        return None if self._last is None else self._last[1]

    def add(
        self,
        episode: int,
        stage: int,
        baseline: float,
        survival: int,
        entropy: float | None,
        reference: tuple[int, float] | None,
    ) -> None:
        """Fold in the next episode; ``reference`` is the jury's consensus (stage, baseline) that episode."""
        if self._last is not None:
            previous_stage, previous_baseline = self._last
            if stage != previous_stage:
                self.stage_changes.append({"episode": episode, "from": previous_stage, "to": stage})
            elif baseline != previous_baseline:
                detail = without_stage_change_detail(previous_baseline, baseline, stage)
                self.flags.append(Flag(WITHOUT_STAGE_CHANGE, episode, detail))
        if reference is not None and reference[0] == stage and reference[1] != baseline:
            self.flags.append(Flag(DISAGREES, episode, disagrees_detail(baseline, reference[1])))
        self._streak = self._streak + 1 if survival < self.thresholds.below * baseline else 0
        if self._streak == self.thresholds.streak:
            first = self._recent[-(self.thresholds.streak - 1)] if self.thresholds.streak > 1 else episode
            self.flags.append(Flag(BELOW_BASELINE, episode, below_detail(self.thresholds, first)))
        self._recent.append(episode)
        self._last = (stage, baseline)
        self.count += 1
        if self.first_baseline is None:
            self.first_baseline = baseline
        if self._bars is not None:
            self._bars[0].add(baseline)
            self._bars[1].add(survival)
            return
        self.episodes.append(episode)
        self.stages.append(stage)
        self.baselines.append(baseline)
        self.survival.append(survival)
        self.entropy.append(entropy)

    def to_dict(self) -> dict[str, Any]:
        if not self.keeps_trajectory:
            raise ValueError("this audit kept a summary, not the trajectory: audit again without bars")
        return {
            "agent_idx": self.agent_idx,
            "episodes": self.episodes.tolist(),
            "curriculum_stage": self.stages.tolist(),
            "baseline_survival_steps": self.baselines.tolist(),
            "survival_steps": self.survival.tolist(),
            "action_entropy": self.entropy,
            "stage_changes": self.stage_changes,
            "flags": [f.to_dict() for f in self.flags],
        }

    def sparkline(self, width: int = 24) -> str:
        return sparkline(self.baselines, width) if self._bars is None else self._bars[0].line()

    def survival_sparkline(self, width: int = 24) -> str:
        return sparkline(self.survival, width) if self._bars is None else self._bars[1].line()


#: The ``agent_snapshots`` columns the audit reads, after (episode, agent): see ``audit_run``.
COLUMNS = ("curriculum_stage", "baseline_survival_steps", "survival_steps", "action_entropy")


def audit_run(
    batches: Iterable[list[tuple[Any, ...]]],
    thresholds: Thresholds,
    only: int | None = None,
    bars: tuple[int, int] | None = None,
) -> list[AgentBaselines]:
    """Every agent (or ``only`` that one) from ``(episode, agent, *COLUMNS)`` rows ordered by episode then
    agent; the rows must include the jury's (agents 0, 1, 2) for ``baseline-disagrees``. ``bars`` (width,
    episodes): keep summaries, not trajectories (``AgentBaselines``).
    """
    agents: dict[int, AgentBaselines] = {}
    for episode, group in groupby(chain.from_iterable(batches), key=lambda row: row[0]):
        rows = list(group)
        reference = consensus([(row[2], row[3]) for row in rows if row[1] in JURY])
        for _, agent, stage, baseline, survival, entropy in rows:
            if only is not None and agent != only:
                continue
            audit = agents.get(agent)
            if audit is None:
                audit = agents[agent] = AgentBaselines(agent, thresholds, bars)
            audit.add(episode, stage, baseline, survival, entropy, reference)
    return [agents[a] for a in sorted(agents)]
