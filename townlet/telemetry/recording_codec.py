"""The stored bytes of one recorded agent (recording format 1), standard library only.

One blob per agent and episode, so one agent's steps decode without touching the others'::

    b"TLR" + format byte (1) + zlib(body)
    body = "<IHHbB" header: steps, start row, start col, death cause code (meter index, -2 timeout),
           series count of Q-values (0 when not recorded)
         + int8 series of ``steps`` each: row moves, col moves (the change from the step before; the start
           cell before step 1), actions, explored (1) or greedy (0), affordance used (-1: none)
         + uint32 series of ``steps`` each: reward, then every meter in METERS order, then each Q-value series,
           stored as the change of the float32 bit pattern from the step before (mod 2**32; the first from
           0.0 for the reward and Q-values, from the initial meter value for a meter)

Change-only series of a meter that loses the same amount every step repeat one 4-byte value, which zlib
squeezes to almost nothing; the bits are exact, so decoding gives the env's float32 values bit for bit.
docs/telemetry_schema.md documents the same layout.
"""

import struct
import zlib
from array import array
from itertools import accumulate

from townlet.environment.world import CAUSE_TIMEOUT, METERS
from townlet.errors import TelemetryError
from townlet.telemetry.recording import RECORDING_FORMAT, AgentRecording

MAGIC = b"TLR"
_HEAD = struct.Struct("<IHHbB")
_MASK = 0xFFFFFFFF


class RecordingDamaged(TelemetryError):
    """A stored recording's bytes do not decode: flipped or truncated bytes, or a newer format."""


def _bits(values: list[float]) -> array:
    return array("I", array("f", values).tobytes())


def _changes(bits: array, first: int) -> array:
    return array("I", [(b - a) & _MASK for a, b in zip([first, *bits[:-1]], bits, strict=True)])


def _floats(changes: array, first: int) -> list[float]:
    bits = array("I", [v & _MASK for v in accumulate(changes, initial=first)][1:])
    return array("f", bits.tobytes()).tolist()


def _moves(positions: list[int], start: int) -> bytes:
    return array("b", [b - a for a, b in zip([start, *positions[:-1]], positions, strict=True)]).tobytes()


def _float_bits(value: float) -> int:
    return _bits([value])[0]


def encode_agent(agent: AgentRecording, initial_meters: tuple[float, ...]) -> bytes:
    """One agent's steps -> its stored blob (the layout in this module's docstring)."""
    cause = CAUSE_TIMEOUT if agent.death_cause == "timeout" else METERS.index(agent.death_cause)
    q = agent.q_values or ()
    body = [
        _HEAD.pack(agent.steps, agent.start[0], agent.start[1], cause, len(q)),
        _moves(agent.rows, agent.start[0]),
        _moves(agent.cols, agent.start[1]),
        array("b", agent.actions).tobytes(),
        array("b", agent.explored).tobytes(),
        array("b", agent.affordances).tobytes(),
        _changes(_bits(agent.rewards), 0).tobytes(),
        *(_changes(_bits(s), _float_bits(m)).tobytes() for s, m in zip(agent.meters, initial_meters, strict=True)),
        *(_changes(_bits(s), 0).tobytes() for s in q),
    ]
    return MAGIC + bytes([RECORDING_FORMAT]) + zlib.compress(b"".join(body), 6)


def decode_agent(blob: bytes, agent_idx: int, initial_meters: tuple[float, ...], where: str) -> AgentRecording:
    """A stored blob -> the agent's steps; ``RecordingDamaged`` naming ``where`` when the bytes do not decode."""
    if len(blob) < 4 or blob[:3] != MAGIC:
        raise RecordingDamaged(f"{where}: the recording is damaged (not a townlet recording): run db check")
    if blob[3] > RECORDING_FORMAT:
        raise RecordingDamaged(
            f"{where}: the recording is format {blob[3]}, newer than this townlet reads (format "
            f"{RECORDING_FORMAT}): upgrade townlet (pip install -U townlet-telemetry)"
        )
    try:
        body = zlib.decompress(blob[4:])
        steps, row, col, cause, nq = _HEAD.unpack_from(body)
        n_series = 1 + len(initial_meters) + nq
        if len(body) != _HEAD.size + 5 * steps + 4 * steps * n_series:
            raise ValueError("wrong length")
        at = _HEAD.size
        small = [array("b", body[at + i * steps : at + (i + 1) * steps]).tolist() for i in range(5)]
        at += 5 * steps
        wide = [array("I", body[at + i * 4 * steps : at + (i + 1) * 4 * steps]) for i in range(n_series)]
        if cause != CAUSE_TIMEOUT and not 0 <= cause < len(METERS):
            raise ValueError("unknown death cause")
        death = "timeout" if cause == CAUSE_TIMEOUT else METERS[cause]
    except (zlib.error, struct.error, ValueError, IndexError):
        raise RecordingDamaged(f"{where}: the recording is damaged (its bytes do not decode): run db check") from None
    meter_series = wide[1 : 1 + len(initial_meters)]
    meters = tuple(_floats(w, _float_bits(m)) for w, m in zip(meter_series, initial_meters, strict=True))
    return AgentRecording(
        agent_idx=agent_idx,
        start=(row, col),
        rows=list(accumulate(small[0], initial=row))[1:],
        cols=list(accumulate(small[1], initial=col))[1:],
        actions=small[2],
        explored=small[3],
        affordances=small[4],
        rewards=_floats(wide[0], 0),
        meters=meters,
        death_cause=death,
        q_values=tuple(_floats(w, 0) for w in wide[1 + len(initial_meters) :]) if nq else None,
    )
