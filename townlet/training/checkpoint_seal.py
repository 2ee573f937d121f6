"""A checkpoint's integrity: the sealed bytes a checkpoint is stored as, and the check before any of it is read.

Formats 2 (townlet 0.6-0.11) and 3 (0.12+, another learner inside) store ``MAGIC + sha256(payload) +
payload``, where the payload is the ``torch.save``
bytes of the learner. Format 1 (0.4, 0.5) stored the bare ``torch.save`` bytes: a zip archive whose entries
each carry a CRC-32, which is checked instead. Both are checked against the stored ``size_bytes`` too.
Nothing here imports torch, so ``db check`` can verify every stored checkpoint without it.
"""

import hashlib
import io
import zipfile

from townlet.errors import TelemetryError
from townlet.persistence.store import StoredCheckpoint

#: What the sealed bytes of a format 2 checkpoint start with.
MAGIC = b"townlet-checkpoint\x00"
DIGEST_BYTES = 32


class CheckpointDamaged(TelemetryError):
    """A stored checkpoint whose bytes or contents are not what the trainer wrote: never loaded as state."""


def seal(payload: bytes) -> bytes:
    """The bytes to store for ``payload``: the magic, its sha256, then the payload."""
    return MAGIC + hashlib.sha256(payload).digest() + payload


def unseal(blob: bytes, *, format_version: int, size_bytes: int) -> bytes:
    """The ``torch.save`` payload of a stored checkpoint, or ``CheckpointDamaged`` saying what is wrong.

    The message is the reason only ("digest mismatch", ...); the caller names the checkpoint and the way out.
    """
    if len(blob) != size_bytes:
        raise CheckpointDamaged(f"it holds {len(blob)} bytes, {size_bytes} were stored")
    if format_version == 1:
        _require_intact_zip(blob)
        return blob
    head = len(MAGIC) + DIGEST_BYTES
    if len(blob) < head or not blob.startswith(MAGIC):
        raise CheckpointDamaged("its header is not a townlet checkpoint's")
    payload = blob[head:]
    if hashlib.sha256(payload).digest() != blob[len(MAGIC) : head]:
        raise CheckpointDamaged("its sha256 digest does not match its bytes")
    return payload


def verify(checkpoint: StoredCheckpoint) -> bytes:
    """A stored checkpoint's ``torch.save`` payload after its integrity check (``CheckpointDamaged`` otherwise)."""
    return unseal(checkpoint.blob, format_version=checkpoint.format_version, size_bytes=checkpoint.size_bytes)


def describe(checkpoint: StoredCheckpoint, run: int) -> str:
    """``run 1's checkpoint after episode 20``: how messages name a checkpoint."""
    return f"run {run}'s checkpoint after episode {checkpoint.episode}"


def _require_intact_zip(blob: bytes) -> None:
    """A format 1 checkpoint is a ``torch.save`` zip archive: every entry must read back with its CRC-32."""
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise CheckpointDamaged(f"it is not a readable torch archive ({exc})") from None
    if bad is not None:
        raise CheckpointDamaged(f"its entry {bad} fails its CRC-32 check")
