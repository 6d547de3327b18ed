"""Alembic migrations of the records schema, packaged so an installed wheel can migrate."""
