"""townlet's Alembic migrations, shipped inside the package as ``townlet_migrations``.

Revisions are keyed to the telemetry ``schema_version`` by ``townlet.persistence.revisions.REVISION_BY_SCHEMA``.
"""
