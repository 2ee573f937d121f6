"""Audits of stored telemetry: baseline trajectories and their anomalies (``baselines``), stored rewards
recomputed with the project's ``RewardStrategy`` (``rewards``, the only part that needs torch), and the
unicode sparklines the CLI draws (``sparkline``).
"""
