"""Errors a user can fix. The CLI catches ``TelemetryError`` once and prints it in one line."""


class TelemetryError(Exception):
    """Base class of every error whose message tells the user how to fix it (CLI exit code 2)."""


class ConfigError(TelemetryError):
    """A configuration file or flag names an unknown key or carries a bad value."""


class DeviceError(TelemetryError):
    """The requested torch device is not available on this machine."""
