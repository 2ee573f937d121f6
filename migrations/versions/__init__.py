"""Alembic revisions, one per telemetry schema version (``0001`` creates schema version 1)."""
