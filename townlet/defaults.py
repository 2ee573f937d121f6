"""Built-in defaults that ``--help`` shows, standard library only (every CLI start pays for imports): the
``[training]`` table (``TrainingConfig`` takes them from here) and the dashboard's audit threshold."""

EPISODES = 30
AGENTS = 8
SEED = 0
DEVICE = "auto"
THREADS = 1  # torch intra-op threads: measured fastest at 8, 64 and 1024 agents (townlet/training/threads.py)
WRITE_QUEUE = 16
CHECKPOINT_EVERY = 10  # episodes between learner checkpoints (one is also taken as a session ends)
CHECKPOINTS_KEPT = 2  # per run: the newest N stay in the database

#: ``serve``: runs with more agent rows than this get a button for the audits instead of running them at once.
AUDITS_ABOVE = 2_000_000

#: A chart's point budget: ``/api/runs/N`` (and ``episodes --points``) summarise a run's episodes into at most
#: this many buckets of consecutive episodes unless told otherwise; a budget is 2 to ``MAX_POINTS``.
POINTS = 1000
MAX_POINTS = 100_000

#: compare's bootstrap (``townlet.analysis.statistics``), rliable's defaults: resamples for an interval and for a
#: performance profile, the coverage, the fixed seed, and the fewest runs a group needs for an interval.
BOOTSTRAP_REPS = 50_000
PROFILE_REPS = 2_000
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0
MIN_RUNS_FOR_INTERVAL = 3
