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


def bar_edges(n: int, width: int) -> list[int]:
    """Where each bar of a ``width``-bar sparkline of ``n`` values starts (and the last one ends)."""
    return [round(i * n / width) for i in range(width + 1)] if n > width else list(range(n + 1))


class Bars:
    """The bars of one sparkline, filled value by value: what a whole-run audit keeps of a trajectory instead
    of the trajectory (O(width) memory, whatever the run's length).

    Told ``n``, the number of values to come, it sums each value into the bar ``sparkline`` would average it
    into, so ``line()`` draws exactly what ``sparkline`` draws of the whole list (when ``n`` values came).
    """

    def __init__(self, n: int, width: int) -> None:
        self.width = width
        self._edges = bar_edges(n, width)
        self._sums = [0.0] * max(1, len(self._edges) - 1)
        self._counts = [0] * len(self._sums)
        self._seen = 0
        self._bar = 0

    def add(self, value: float) -> None:
        while self._bar < len(self._sums) - 1 and self._seen >= self._edges[self._bar + 1]:
            self._bar += 1
        self._sums[self._bar] += value
        self._counts[self._bar] += 1
        self._seen += 1

    def line(self, *, from_zero: bool = False) -> str:
        means = [total / count for total, count in zip(self._sums, self._counts, strict=True) if count]
        return sparkline(means, max(self.width, len(means)), from_zero=from_zero)
