"""The built-in ``[training]`` defaults, standard library only: ``TrainingConfig`` takes them from here,
and ``train --help`` shows them without importing the config machinery (every CLI start pays for imports)."""

EPISODES = 30
AGENTS = 8
SEED = 0
DEVICE = "auto"
THREADS = 1  # torch intra-op threads: measured fastest at 8, 64 and 1024 agents (townlet/training/threads.py)
WRITE_QUEUE = 16
