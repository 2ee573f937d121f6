"""Resolving the user's ``--device auto|cpu|cuda`` choice into a ``torch.device``."""

import torch

from townlet.config import DEVICE_CHOICES
from townlet.errors import DeviceError


def resolve_device(name: str) -> torch.device:
    """Map ``auto``/``cpu``/``cuda`` (or ``cuda:N``) to a device that exists here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} requested but CUDA is not available: use --device cpu or auto")
        return torch.device(name)
    raise DeviceError(f"unknown device {name!r}: use one of {', '.join(DEVICE_CHOICES)}")
