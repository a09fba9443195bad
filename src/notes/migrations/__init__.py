"""Alembic migrations of the notes schema (``notes db upgrade`` runs them)."""
