"""The grid drawn in the terminal: ``replay --play`` and ``watch --grid`` share ``frame``.

Each cell is two characters wide (one when the grid is wider than 38 cells, so 80 columns hold it): an
affordance shows its initial (B bed, S shower, F fridge, J job), an agent its index's last digit, the followed
agent in reverse video; under the grid the followed agent's meters as bars and the step counter.
"""

from collections.abc import Mapping, Sequence

from rich.text import Text

#: Cells wider than this many draw one character each.
WIDE_GRID = 38
BAR = 20


def frame(
    grid_size: int,
    affordances: Sequence[tuple[str, int, int]],
    positions: Mapping[int, tuple[int, int]],
    followed: int | None,
    meters: Sequence[tuple[str, float]],
    status: str,
) -> Text:
    """One frame: the grid, the followed agent's meter bars, and ``status`` (e.g. ``step 12/200``)."""
    width = 1 if grid_size > WIDE_GRID else 2
    cells: dict[tuple[int, int], tuple[str, str]] = {}
    for name, row, col in affordances:
        cells[(row, col)] = (name[0].upper(), "bold yellow")
    for agent, cell in positions.items():
        if agent == followed:
            continue
        cells[cell] = (str(agent % 10), "cyan")
    if followed is not None and followed in positions:
        cells[positions[followed]] = (str(followed % 10), "bold reverse green")
    text = Text()
    for row in range(grid_size):
        for col in range(grid_size):
            mark, style = cells.get((row, col), ("·", "dim"))
            text.append(mark.ljust(width), style=style)
        text.append("\n")
    for name, value in meters:
        filled = round(value * BAR)
        text.append(f"{name:>10} ", style="bold")
        text.append("█" * filled, style="green" if value > 0.25 else "red")
        text.append("░" * (BAR - filled), style="dim")
        text.append(f" {value:.3f}\n")
    text.append(status)
    return text
