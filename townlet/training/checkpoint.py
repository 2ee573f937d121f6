"""Learner checkpoints: the trainer's whole state as sealed ``torch.save`` bytes, and back.

A checkpoint is taken in the training thread right after its episode (the bytes are immutable, so the
writer thread can store them while the next episode changes the tensors) and stored in that episode's
transaction (``TelemetryStore.write_episode``). Before anything is loaded, its bytes are checked
(``checkpoint_seal``: size, sha256 digest, or a format 1 archive's CRC-32s), then it is loaded with
``torch.load(weights_only=True)`` (a blob from a shared database can hold tensors and plain values only,
never code), and its structure, types and shapes are compared with the trainer's own state. Only then does
any of it go into the trainer.
"""

import io
from typing import Any

import torch

from townlet.errors import TelemetryError
from townlet.persistence.store import StoredCheckpoint
from townlet.training.checkpoint_seal import CheckpointDamaged, describe, seal, verify
from townlet.training.loop import Trainer

#: The layout of a checkpoint's bytes and of the dict inside them; bump it when either changes.
#: 1: bare ``torch.save`` bytes (townlet 0.4-0.5); 2: sealed with a sha256 digest (``checkpoint_seal``);
#: 3: the learner of townlet 0.12 (one-hot cells in front of the network, double DQN, learning from each step
#: alive): a format 1 or 2 checkpoint holds the learner before it, whose networks would be misread.
CHECKPOINT_FORMAT = 3
READABLE_FORMATS = (3,)
#: Formats of the learner before townlet 0.12: refused with the reason, and the way on (a fresh learner).
OLD_LEARNER_FORMATS = (1, 2)


class CheckpointRefused(TelemetryError):
    """A stored checkpoint this session cannot continue from (unknown format, another device type)."""


def capture(trainer: Trainer, episode: int) -> StoredCheckpoint:
    """The trainer's state after ``episode``, serialised and sealed."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "episode": episode, "trainer": trainer.state_dict()}, buffer)
    blob = seal(buffer.getvalue())
    return StoredCheckpoint(episode, CHECKPOINT_FORMAT, trainer.device.type, blob, len(blob))


def require_loadable(checkpoint: StoredCheckpoint, run: int, device: torch.device, *, device_given: bool) -> None:
    """Refuse, in one line, a checkpoint of an unknown format, or of another device type unless --device chose."""
    where = describe(checkpoint, run)
    if checkpoint.format_version in OLD_LEARNER_FORMATS:
        raise CheckpointRefused(
            f"{where} has format {checkpoint.format_version}: it holds the learner of townlet 0.11 or before, which "
            f"this townlet's (format {CHECKPOINT_FORMAT}) cannot continue: pass --fresh-learner to go on with a new "
            "learner after the run's last episode, or resume it with townlet 0.11"
        )
    if checkpoint.format_version not in READABLE_FORMATS:
        raise CheckpointRefused(
            f"{where} has format {checkpoint.format_version}, this townlet reads format "
            f"{' and '.join(map(str, READABLE_FORMATS))}: resume it with the townlet that wrote it (or a newer one)"
        )
    if checkpoint.device != device.type and not device_given:
        raise CheckpointRefused(
            f"{where} was trained on {checkpoint.device}, this session would train on {device.type}: pass "
            f"--device {checkpoint.device} to continue exactly, or --device {device.type} to move the learner "
            "(its random streams then restart from the seed)"
        )


def restore(trainer: Trainer, checkpoint: StoredCheckpoint) -> None:
    """Load a checkpoint (already checked by ``require_loadable``) into a trainer built from the run's config.

    Raises ``CheckpointDamaged`` (reason only) before the trainer is touched when the bytes fail their check,
    do not load as tensors and plain values, or hold a state of another structure than this trainer's.
    """
    payload = verify(checkpoint)
    try:
        state = torch.load(io.BytesIO(payload), map_location=trainer.device, weights_only=True)
    except Exception as exc:  # any unpickling failure: the bytes are not a checkpoint townlet can trust
        raise CheckpointDamaged(f"it does not load as tensors and plain values ({_first_line(exc)})") from None
    same_device_type = checkpoint.device == trainer.device.type
    if not isinstance(state, dict) or not isinstance(state.get("trainer"), dict):
        raise CheckpointDamaged("it holds no trainer state")
    expected, loaded = trainer.state_dict(), state["trainer"]
    if not same_device_type:  # random generator states are device-specific; they are not restored then
        expected.pop("rng", None)
        loaded = {key: value for key, value in loaded.items() if key != "rng"}
    problem = _structure_problem(expected, loaded, "trainer")
    if problem is None:
        problem = _optimizer_problem(state["trainer"]["population"])
    if problem is not None:
        raise CheckpointDamaged(f"its state does not fit this trainer ({problem})")
    try:
        trainer.load_state_dict(state["trainer"], same_device_type=same_device_type)
    except (ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointDamaged(f"its state does not fit this trainer ({_first_line(exc)})") from None


#: Paths whose tensors may differ from the trainer's in their first dimension: the filled part of the replay
#: ring, and the optimiser's per-parameter state (checked against the parameters by ``_optimizer_problem``).
_GROWING = ("trainer.population.replay.",)
_FREE = ("trainer.population.optimizer.state",)


def _structure_problem(expected: Any, loaded: Any, path: str) -> str | None:
    """Where ``loaded`` differs from the trainer's own state in keys, value types or tensor shapes, or None."""
    if path in _FREE:
        return None if isinstance(loaded, dict) else f"{path} is {type(loaded).__name__}, not dict"
    if isinstance(expected, torch.Tensor):
        if not isinstance(loaded, torch.Tensor):
            return f"{path} is {type(loaded).__name__}, not a tensor"
        if loaded.dtype != expected.dtype:
            return f"{path} is {loaded.dtype}, not {expected.dtype}"
        same = loaded.shape[1:] == expected.shape[1:] if path.startswith(_GROWING) else loaded.shape == expected.shape
        if not same:
            return f"{path} has shape {tuple(loaded.shape)}, not {tuple(expected.shape)}"
        return None
    if isinstance(expected, dict):
        if not isinstance(loaded, dict):
            return f"{path} is {type(loaded).__name__}, not dict"
        if set(loaded) != set(expected):
            missing, extra = set(expected) - set(loaded), set(loaded) - set(expected)
            return f"{path} lacks {sorted(map(str, missing))}" if missing else f"{path} has extra {sorted(extra)}"
        for key, value in expected.items():
            problem = _structure_problem(value, loaded[key], f"{path}.{key}")
            if problem is not None:
                return problem
        return None
    if isinstance(expected, list | tuple):
        if not isinstance(loaded, list | tuple):
            return f"{path} is {type(loaded).__name__}, not a sequence"
        if path == "trainer.curriculum.recent":  # the window's length varies; its values are numbers
            bad = next((v for v in loaded if not isinstance(v, int | float) or isinstance(v, bool)), None)
            return None if bad is None else f"{path} holds {type(bad).__name__}"
        if len(loaded) != len(expected):
            return f"{path} has {len(loaded)} items, not {len(expected)}"
        for i, (want, got) in enumerate(zip(expected, loaded, strict=True)):
            problem = _structure_problem(want, got, f"{path}[{i}]")
            if problem is not None:
                return problem
        return None
    if expected is None or loaded is None:
        return None if expected is loaded or expected is None else f"{path} is None"
    kinds = (bool,) if isinstance(expected, bool) else (int, float) if isinstance(expected, int | float) else None
    if kinds is not None and (not isinstance(loaded, kinds) or (kinds != (bool,) and isinstance(loaded, bool))):
        return f"{path} is {type(loaded).__name__}, not {type(expected).__name__}"
    if kinds is None and type(loaded) is not type(expected):
        return f"{path} is {type(loaded).__name__}, not {type(expected).__name__}"
    return None


def _optimizer_problem(population: dict[str, Any]) -> str | None:
    """The optimiser's per-parameter state must match the parameters it belongs to, tensor for tensor."""
    params = list(population["q_net"].values())
    for index, entry in population["optimizer"]["state"].items():
        if not isinstance(index, int) or not 0 <= index < len(params) or not isinstance(entry, dict):
            return f"optimizer state {index!r} belongs to no parameter"
        for name, value in entry.items():
            if not isinstance(value, torch.Tensor):
                return f"optimizer state {index}.{name} is {type(value).__name__}, not a tensor"
            want = params[index].shape
            if value.dim() > 0 and value.shape != want:
                return f"optimizer state {index}.{name} has shape {tuple(value.shape)}, not {tuple(want)}"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


__all__ = ["CHECKPOINT_FORMAT", "CheckpointDamaged", "CheckpointRefused", "capture", "require_loadable", "restore"]
