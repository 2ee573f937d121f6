"""townlet's Alembic migrations, shipped inside the package as ``townlet_migrations``.

Each revision's telemetry ``schema_version`` is in ``townlet.persistence.revisions.SCHEMA_BY_REVISION``.
"""
