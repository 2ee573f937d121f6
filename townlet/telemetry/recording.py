"""Episode recordings: every step of the recorded agents of one episode, as a versioned DTO of Python values.

The trainer's ``StepRecorder`` keeps one float32 row per agent and step on the agents' device and hands the
whole episode over as one tensor after one bulk device->host copy (``FRAME_COLUMNS`` says what each column
holds). ``recording_from_frames`` is the choke point: it checks every value with the DTO's field rules (a NaN
meter or a position outside the grid is refused naming the agent, step and field) and turns the tensor into
Python lists; nothing past it sees a tensor. ``townlet.telemetry.recording_codec`` writes and reads the
stored bytes.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from townlet.environment.world import ACTIONS, AFFORDANCES, CAUSE_ALIVE, CAUSE_TIMEOUT, INITIAL_METERS, METERS
from townlet.telemetry.dto import _METER, FieldRule, SnapshotValidationError

if TYPE_CHECKING:  # annotations only: the read path never imports torch
    import torch

#: The version of the recording DTO and of its stored bytes (``recording_codec``); a reader refuses a newer one.
RECORDING_FORMAT = 1

#: Why an episode is recorded: every Nth episode, the first at a new curriculum stage, the last of a ``train``
#: session, or asked for by number (``recording.episodes`` / ``--record-episodes``).
REASONS: tuple[str, ...] = ("every", "stage", "session_last", "asked")

#: Integer columns of a frame row, then float columns (all stored as float32 in the frames tensor, ints exact).
INT_COLUMNS: tuple[str, ...] = ("row", "col", "action", "explored", "affordance", "cause", "acting")
FLOAT_COLUMNS: tuple[str, ...] = ("reward", *(f"meter_{m}" for m in METERS))
FRAME_COLUMNS: tuple[str, ...] = (*INT_COLUMNS, *FLOAT_COLUMNS)  # then one column per action when q_values


@dataclass(frozen=True, slots=True)
class AgentRecording:
    """One agent's steps of one episode: its start cell, then per step (after it) the cell, the action and
    whether it was exploratory, the affordance used (-1: none), the reward, every meter and, optionally, the
    Q-values the policy saw. ``death_cause`` is how its episode ended (a meter or ``timeout``)."""

    agent_idx: int
    start: tuple[int, int]
    rows: list[int]
    cols: list[int]
    actions: list[int]
    explored: list[int]
    affordances: list[int]
    rewards: list[float]
    meters: tuple[list[float], ...]  # one series per meter, in METERS order
    death_cause: str
    q_values: tuple[list[float], ...] | None = None  # one series per action

    @property
    def steps(self) -> int:
        return len(self.actions)

    def step_dicts(self, names: "RecordingHeader", first: int = 1, last: int | None = None) -> list[dict[str, Any]]:
        """One JSON-safe dict per step ``first..last`` (1-based, inclusive): what ``replay --steps`` prints."""
        last = self.steps if last is None else last
        out = []
        for i in range(first - 1, last):
            step: dict[str, Any] = {
                "step": i + 1,
                "row": self.rows[i],
                "col": self.cols[i],
                "action": names.actions[self.actions[i]],
                "explored": bool(self.explored[i]),
                "reward": self.rewards[i],
                **{f"meter_{m}": series[i] for m, series in zip(names.meters, self.meters, strict=True)},
                "affordance": names.affordance_names[self.affordances[i]] if self.affordances[i] >= 0 else None,
                "alive": i + 1 < self.steps or self.death_cause == "timeout",
                "death_cause": self.death_cause if i + 1 == self.steps else None,
            }
            if self.q_values is not None:
                step["q_values"] = [series[i] for series in self.q_values]
            out.append(step)
        return out


@dataclass(frozen=True, slots=True)
class RecordingHeader:
    """What one recording needs to stand alone, whatever the grid: the world it was played in (grid size,
    affordance cells, meter and action names, initial meters), the stage (its depletion and active meters),
    why it was recorded and which agents it holds."""

    format: int
    episode: int
    reasons: tuple[str, ...]
    grid_size: int
    max_steps: int
    stage: int
    active_meters: tuple[str, ...]
    depletion: tuple[float, ...]
    agents: tuple[int, ...]
    steps: int  # the episode's steps: the longest agent's
    q_values: bool = False
    meters: tuple[str, ...] = METERS
    actions: tuple[str, ...] = ACTIONS
    affordances: tuple[tuple[str, int, int], ...] = tuple((a.name, a.row, a.col) for a in AFFORDANCES)
    initial_meters: tuple[float, ...] = tuple(INITIAL_METERS[m] for m in METERS)

    @property
    def affordance_names(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.affordances)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, keys sorted: stored beside the agents' blobs and sent to the dashboard."""
        return {
            "actions": list(self.actions),
            "active_meters": list(self.active_meters),
            "affordances": [{"name": n, "row": r, "col": c} for n, r, c in self.affordances],
            "agents": list(self.agents),
            "depletion": list(self.depletion),
            "episode": self.episode,
            "format": self.format,
            "grid_size": self.grid_size,
            "initial_meters": list(self.initial_meters),
            "max_steps": self.max_steps,
            "meters": list(self.meters),
            "q_values": self.q_values,
            "reasons": list(self.reasons),
            "stage": self.stage,
            "steps": self.steps,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RecordingHeader":
        return cls(
            format=data["format"],
            episode=data["episode"],
            reasons=tuple(data["reasons"]),
            grid_size=data["grid_size"],
            max_steps=data["max_steps"],
            stage=data["stage"],
            active_meters=tuple(data["active_meters"]),
            depletion=tuple(data["depletion"]),
            agents=tuple(data["agents"]),
            steps=data["steps"],
            q_values=data["q_values"],
            meters=tuple(data["meters"]),
            actions=tuple(data["actions"]),
            affordances=tuple((a["name"], a["row"], a["col"]) for a in data["affordances"]),
            initial_meters=tuple(data["initial_meters"]),
        )


@dataclass(frozen=True, slots=True)
class EpisodeRecording:
    """One recorded episode: its header and every recorded agent's steps (Python values only)."""

    header: RecordingHeader
    agents: tuple[AgentRecording, ...]


def _cause_name(code: int) -> str:
    if code == CAUSE_TIMEOUT:
        return "timeout"
    if code == CAUSE_ALIVE or not 0 <= code < len(METERS):
        raise SnapshotValidationError(f"recording: death cause code {code} is not a meter or a timeout")
    return METERS[code]


def recording_from_frames(
    frames: "torch.Tensor",
    *,
    agents: Sequence[int],
    episode: int,
    reasons: Sequence[str],
    grid_size: int,
    max_steps: int,
    stage: int,
    active_meters: Sequence[str],
    depletion: Sequence[float],
    q_values: bool,
) -> EpisodeRecording:
    """The choke point: a CPU frames tensor ``(steps + 1, agents, columns)`` (row 0: the start state) -> the DTO.

    Every value is checked with the same ``FieldRule``s as the agent records (positions inside the grid,
    actions among ``ACTIONS``, meters within [0, 1], rewards and Q-values finite); the first bad one is named
    ``recording.agents[k].steps[t].field``. Each agent keeps the steps it acted in (its survival).
    """
    import torch  # the write path only

    if frames.device.type != "cpu" or frames.dim() != 3 or frames.shape[1] != len(agents):
        raise SnapshotValidationError(f"recording: frames must be a CPU (steps+1, {len(agents)}, columns) tensor")
    width = len(FRAME_COLUMNS) + (len(ACTIONS) if q_values else 0)
    if frames.shape[2] != width:
        raise SnapshotValidationError(f"recording: frames have {frames.shape[2]} columns, expected {width}")
    names = (*FRAME_COLUMNS, *(f"q_{a}" for a in ACTIONS)) if q_values else FRAME_COLUMNS
    cell = FieldRule(int, 0, grid_size - 1)
    rules: dict[str, tuple[FieldRule, int]] = {  # rule, first row it applies to (row 0 has no action yet)
        "row": (cell, 0),
        "col": (cell, 0),
        "action": (FieldRule(int, 0, len(ACTIONS) - 1), 1),
        **{name: (_METER, 0) for name in names if name.startswith("meter_")},
        "reward": (FieldRule(float), 1),
        **{name: (FieldRule(float), 1) for name in names if name.startswith("q_")},
    }
    for name, (rule, first) in rules.items():
        column = frames[first:, :, names.index(name)]
        bad = ~torch.isfinite(column) | (column < rule.low) | (column > rule.high)
        if bool(bad.any()):
            t, k = (int(i) for i in bad.nonzero()[0])
            value = float(column[t, k])
            rule.check_value(f"recording.agents[{agents[k]}].steps[{t + first}].{name}", rule.kind(value))
    acting = frames[1:, :, INT_COLUMNS.index("acting")]
    survival = acting.sum(dim=0).to(torch.int64).tolist()
    ints = frames[..., : len(INT_COLUMNS)].to(torch.int64).permute(1, 2, 0).tolist()
    floats = frames[..., len(INT_COLUMNS) :].permute(1, 2, 0).tolist()
    meter_at = [FLOAT_COLUMNS.index(f"meter_{m}") for m in METERS]
    recorded = []
    for k, agent in enumerate(agents):
        n = survival[k]
        i, f = ints[k], floats[k]
        recorded.append(
            AgentRecording(
                agent_idx=agent,
                start=(i[0][0], i[1][0]),
                rows=i[0][1 : n + 1],
                cols=i[1][1 : n + 1],
                actions=i[2][1 : n + 1],
                explored=i[3][1 : n + 1],
                affordances=i[4][1 : n + 1],
                rewards=f[0][1 : n + 1],
                meters=tuple(f[c][1 : n + 1] for c in meter_at),
                death_cause=_cause_name(i[5][n]) if n else "timeout",
                q_values=tuple(s[1 : n + 1] for s in f[len(FLOAT_COLUMNS) :]) if q_values else None,
            )
        )
    header = RecordingHeader(
        format=RECORDING_FORMAT,
        episode=episode,
        reasons=tuple(reasons),
        grid_size=grid_size,
        max_steps=max_steps,
        stage=stage,
        active_meters=tuple(active_meters),
        depletion=tuple(float(d) for d in depletion),
        agents=tuple(agents),
        steps=max(survival, default=0),
        q_values=q_values,
    )
    return EpisodeRecording(header, tuple(recorded))


#: The columns of one step, in ``replay --steps --csv`` order (``step_dicts`` keys; ``q_values`` when recorded).
STEP_COLUMNS: tuple[str, ...] = (
    "step", "row", "col", "action", "explored", "reward", *(f"meter_{m}" for m in METERS), "affordance", "alive",
    "death_cause",
)  # fmt: skip


def player_payload(header: RecordingHeader, agents: Sequence[AgentRecording]) -> dict[str, Any]:
    """One recorded episode for the dashboard's player in one document: the header, then per agent its start
    cell and its steps as columns (``rows``, ``cols``, ``actions``, ``explored``, ``affordances``, ``rewards``,
    ``meters`` one list per meter), and how it ended."""
    return {
        "header": header.to_dict(),
        "agents": [
            {
                "actions": a.actions,
                "affordances": a.affordances,
                "agent_idx": a.agent_idx,
                "cols": a.cols,
                "death_cause": a.death_cause,
                "explored": a.explored,
                "meters": [list(series) for series in a.meters],
                "rewards": a.rewards,
                "rows": a.rows,
                "start": list(a.start),
                "steps": a.steps,
            }
            for a in agents
        ],
    }
