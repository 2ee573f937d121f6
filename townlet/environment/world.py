"""The world's fixed facts: meters, their depletion, affordances and actions.

Everything else (environment, curriculum, telemetry) reads these tuples; nothing else spells them out.
"""

from dataclasses import dataclass

#: Meter names, in the column order of every ``(num_agents, len(METERS))`` meter tensor.
METERS: tuple[str, ...] = ("energy", "hygiene", "satiation", "money")

#: Meters whose reaching 0 kills the agent (when the curriculum stage has them active).
VITAL_METERS: tuple[str, ...] = ("energy", "hygiene", "satiation")

#: Value of every meter at the start of an episode.
INITIAL_METERS: dict[str, float] = {"energy": 1.0, "hygiene": 1.0, "satiation": 1.0, "money": 0.5}

#: Loss per step at curriculum multiplier 1.0, for an active meter.
BASE_DEPLETION: dict[str, float] = {"energy": 0.010, "hygiene": 0.008, "satiation": 0.008, "money": 0.0}

#: A meter at or below this value counts as empty (absorbs float32 rounding of repeated subtraction).
EMPTY_EPSILON = 1e-5

#: Actions, in the order of the Q-network's outputs.
ACTIONS: tuple[str, ...] = ("up", "down", "left", "right", "interact")
INTERACT = ACTIONS.index("interact")

#: Death-cause codes that are not a meter index.
CAUSE_ALIVE = -1
CAUSE_TIMEOUT = -2


@dataclass(frozen=True, slots=True)
class Affordance:
    """A fixed cell where ``interact`` changes meters; it refuses when a cost would drive a meter below 0."""

    name: str
    row: int
    col: int
    effects: dict[str, float]


AFFORDANCES: tuple[Affordance, ...] = (
    Affordance("bed", 2, 2, {"energy": 0.30}),
    Affordance("shower", 2, 5, {"hygiene": 0.30}),
    Affordance("fridge", 5, 2, {"satiation": 0.30, "money": -0.10}),
    Affordance("job", 5, 5, {"money": 0.25, "energy": -0.05}),
)


def cause_name(code: int) -> str:
    """Name of a death-cause code: a meter name, ``"timeout"`` or ``"alive"``."""
    if code == CAUSE_TIMEOUT:
        return "timeout"
    if code == CAUSE_ALIVE:
        return "alive"
    return METERS[code]
