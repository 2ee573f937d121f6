"""Unicode sparklines: a trajectory of any length squeezed into a few characters."""

import itertools
from collections.abc import Sequence

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int = 24, *, from_zero: bool = False) -> str:
    """One bar per value, or per bucket (its mean) when there are more values than ``width``.

    Scaled between the trajectory's own minimum and maximum (a flat trajectory is drawn at mid height), or
    with ``from_zero`` between 0 and the maximum (for counts: all zeros is the lowest bar).
    """
    if not values:
        return ""
    if len(values) > width:
        edges = [round(i * len(values) / width) for i in range(width + 1)]
        values = [sum(values[a:b]) / (b - a) for a, b in itertools.pairwise(edges) if b > a]
    low, high = (0.0 if from_zero else min(values)), max(values)
    if from_zero and high <= 0:
        return BARS[0] * len(values)
    if high == low:
        return BARS[len(BARS) // 2 - 1] * len(values)
    top = len(BARS) - 1
    return "".join(BARS[round((v - low) / (high - low) * top)] for v in values)
