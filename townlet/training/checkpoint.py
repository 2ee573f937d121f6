"""Learner checkpoints: the trainer's whole state as ``torch.save`` bytes, and back.

A checkpoint is taken in the training thread right after its episode (the bytes are immutable, so the
writer thread can store them while the next episode changes the tensors) and stored in that episode's
transaction (``TelemetryStore.write_episode``). Loading uses ``torch.load(weights_only=True)``: a blob from a
shared database can hold tensors and plain values only, never code.
"""

import io

import torch

from townlet.errors import TelemetryError
from townlet.persistence.store import StoredCheckpoint
from townlet.training.loop import Trainer

#: The layout of the dict inside a checkpoint's bytes; bump it when that layout changes.
CHECKPOINT_FORMAT = 1


class CheckpointRefused(TelemetryError):
    """A stored checkpoint this session cannot continue from (unknown format, another device type)."""


def capture(trainer: Trainer, episode: int) -> StoredCheckpoint:
    """The trainer's state after ``episode``, serialised."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "episode": episode, "trainer": trainer.state_dict()}, buffer)
    return StoredCheckpoint(episode, CHECKPOINT_FORMAT, trainer.device.type, buffer.getvalue())


def require_loadable(checkpoint: StoredCheckpoint, run: int, device: torch.device, *, device_given: bool) -> None:
    """Refuse, in one line, a checkpoint of an unknown format, or of another device type unless --device chose."""
    where = f"run {run}'s checkpoint after episode {checkpoint.episode}"
    if checkpoint.format_version != CHECKPOINT_FORMAT:
        raise CheckpointRefused(
            f"{where} has format {checkpoint.format_version}, this townlet reads format {CHECKPOINT_FORMAT}: "
            "resume it with the townlet that wrote it (or a newer one)"
        )
    if checkpoint.device != device.type and not device_given:
        raise CheckpointRefused(
            f"{where} was trained on {checkpoint.device}, this session would train on {device.type}: pass "
            f"--device {checkpoint.device} to continue exactly, or --device {device.type} to move the learner "
            "(its random streams then restart from the seed)"
        )


def restore(trainer: Trainer, checkpoint: StoredCheckpoint) -> None:
    """Load a checkpoint (already checked by ``require_loadable``) into a trainer built from the run's config."""
    state = torch.load(io.BytesIO(checkpoint.blob), map_location=trainer.device, weights_only=True)
    trainer.load_state_dict(state["trainer"], same_device_type=checkpoint.device == trainer.device.type)
