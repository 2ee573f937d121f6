"""Persistence: the only package that knows SQL.

``models`` (SQLAlchemy tables), ``engine`` (URLs, SQLite pragmas, read-only opening), ``migrate`` (Alembic
in code, the schema_version <-> revision map, the revision check every command runs), ``store``
(``TelemetryStore``: one transaction per episode) and ``writer`` (the trainer's background writer thread).
"""
