"""townlet: a small PyTorch multi-agent RL trainer with versioned, JSON-safe telemetry."""

__version__ = "0.12.0"

import warnings

# torch warns at import when NumPy is absent; townlet never converts through NumPy, so the warning is noise.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy", category=UserWarning)
