"""The run page's agents x episodes heat map of survival, downsampled by the database to what the page can draw."""

from typing import Any

from townlet.persistence.reader import RunSummary, TelemetryReader


def survival_heatmap(reader: TelemetryReader, run: RunSummary, *, columns: int, rows: int) -> dict[str, Any]:
    """Mean survival (steps, rounded) in a ``rows`` x ``columns`` grid at most: one row per agent and one
    column per episode when they fit, else buckets of consecutive agents and episodes (``downsampled``; on a
    long run each column is whole blocks of 16 episodes, read from the survival blocks)."""
    grid = reader.survival_grid(run, columns=columns, rows=rows)
    matrix = [[None] * grid["columns"] for _ in range(grid["rows"])]
    for row, column, mean in grid["cells"]:
        matrix[row][column] = round(mean)
    first, last = grid["first_episode"], grid["last_episode"]
    span = 0 if first is None else last - first + 1
    return {
        "run": run.id,
        "agents": run.num_agents,
        "first_episode": first,
        "last_episode": last,
        "rows": grid["rows"],
        "columns": grid["columns"],
        "agents_per_row": run.num_agents / grid["rows"] if grid["rows"] else 0,
        "episodes_per_column": grid.get("episodes_per_column", span / grid["columns"] if grid["columns"] else 0),
        "downsampled": grid["rows"] < run.num_agents or grid["columns"] < span,
        "survival": matrix,
    }
