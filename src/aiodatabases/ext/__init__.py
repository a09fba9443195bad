"""Integrations of aiodatabases with web frameworks; each lives in its own module."""
