"""Alembic environment of the notes service.

Run through ``notes db ...`` (which hands over a connection), or through ``alembic`` with the
repository's ``alembic.ini``: the URL is then ``sqlalchemy.url`` if set, else
``NOTES_DATABASE_URL`` (default: ``sqlite:///notes.db``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from notes.migrate import run_with_connection
from notes.settings import Settings
from notes.tables import metadata

config = context.config


def run_migrations(connection: sa.Connection) -> None:
    """Run the migrations on one connection, in one transaction where the database can."""
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters tables by copying them: later migrations need batch mode there.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    """Migrate the given connection, or open one from the configured URL."""
    if context.is_offline_mode():
        raise SystemExit("offline (--sql) migrations are not supported; run them online")
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or Settings().database_url.get_secret_value()
    run_with_connection(url, run_migrations)


main()
