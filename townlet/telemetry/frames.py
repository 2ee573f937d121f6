"""``FramePublisher``: the live grid. While ``train --live`` runs, the recorded agents' cells and meters go out
as ``grid_frame`` messages, at most ``fps`` a second, only while a client has subscribed.

A frame costs one small device->host copy (the chosen agents' cells, alive flags and meters in one tensor);
nothing is built while nobody watches the grid, and ``publish_frame`` only hands the bytes to the server's
thread, so a slow or absent viewer never slows training.
"""

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from townlet.environment.world import AFFORDANCES, METERS
from townlet.telemetry.dto import _METER, FieldRule
from townlet.telemetry.payloads import grid_frame

if TYPE_CHECKING:
    from townlet.environment.grid import VectorizedGridEnv


class FrameSink(Protocol):
    """Where frames go (``WebSocketBroadcaster``): how many clients want them, and a non-blocking publish."""

    frame_subscribers: int

    def publish_frame(self, frame: dict[str, Any]) -> None: ...


class FramePublisher:
    """Owns the live grid's rate limit, its frame counter and which agents it shows."""

    def __init__(self, sink: FrameSink, run_id: str, agents: Sequence[int], grid_size: int, fps: float) -> None:
        self.sink = sink
        self.run_id = run_id
        self.agents = list(agents)
        self.grid_size = grid_size
        self.interval = 1.0 / fps if fps > 0 else float("inf")
        self.sent = 0
        self._last = -float("inf")
        self._index: Any = None
        self._cell = FieldRule(int, 0, grid_size - 1)

    def offer(self, env: "VectorizedGridEnv", episode: int, step: int, stage: int) -> None:
        """Called after every step; publishes a frame when someone watches and the rate allows."""
        if self.sink.frame_subscribers <= 0:
            return
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        import torch

        if self._index is None:
            self._index = torch.tensor(self.agents, dtype=torch.long, device=env.device)
        parts = (env.positions.to(torch.float32), (~env.done).to(torch.float32).unsqueeze(1), env.meters)
        rows = torch.cat(parts, dim=1).index_select(0, self._index).cpu().tolist()  # the frame's one copy
        cells = [int(r[0]) for r in rows], [int(r[1]) for r in rows]
        meters = [r[3:] for r in rows]
        for name, column in zip(("rows", "cols"), cells, strict=True):
            self._cell.check_column(name, column)
        for j, name in enumerate(METERS):  # one whole-column check per meter (agents[k]: the frame's k-th agent)
            _METER.check_column(f"meter_{name}", [values[j] for values in meters])
        self.sent += 1
        self.sink.publish_frame(
            grid_frame(
                self.run_id, self.sent, episode, step, stage, self.grid_size,
                [(a.name, a.row, a.col) for a in AFFORDANCES], METERS, self.agents, cells[0], cells[1],
                [r[2] > 0 for r in rows], meters,
            )
        )  # fmt: skip
