"""The ``notes`` command: serve the API, and manage the database schema.

```
notes serve [--host H] [--port P] [--workers N] [--database-url URL] [--no-migrate]
notes db upgrade [REVISION]       apply migrations (default: all)
notes db downgrade REVISION       undo migrations (``base``: all; ``-1``: the last one)
notes db current                  show the revision of the database
notes db adopt EMAIL              give notes older than accounts (no owner) to an account
```

The database is ``--database-url``, else ``NOTES_DATABASE_URL``, else ``notes.db`` in the
working directory.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

import aiodatabases

from . import migrate
from .accounts import AccountsRepository
from .schemas import normalize_email
from .settings import Settings

__all__ = ["main"]

logger = logging.getLogger("notes.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="notes", description="The notes service.")
    parser.add_argument(
        "--database-url",
        help="the database (default: NOTES_DATABASE_URL, else sqlite:///notes.db)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    serve.add_argument(
        "--workers", type=int, default=1, help="worker processes (default: %(default)s)"
    )
    serve.add_argument(
        "--migrate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="apply pending migrations first (default: only on the embedded SQLite database)",
    )
    serve.add_argument(
        "--log-level",
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level (default: NOTES_LOG_LEVEL, else info)",
    )

    db = commands.add_parser("db", help="manage the database schema")
    actions = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    upgrade = actions.add_parser("upgrade", help="apply migrations")
    upgrade.add_argument("revision", nargs="?", default="head", help="target (default: head)")
    downgrade = actions.add_parser("downgrade", help="undo migrations")
    downgrade.add_argument("revision", help="target: a revision, -1 for one step, or base")
    actions.add_parser("current", help="show the revision the database is at")
    adopt = actions.add_parser(
        "adopt", help="give every note without an owner (written before accounts) to an account"
    )
    adopt.add_argument("email", help="the account's email address (it must exist)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``notes`` command line; returns the exit status."""
    arguments = _parser().parse_args(argv)
    if arguments.database_url:
        # Through the environment, so that every worker process reads the same settings.
        os.environ["NOTES_DATABASE_URL"] = arguments.database_url
    settings = Settings()
    logging.basicConfig(
        level=(getattr(arguments, "log_level", None) or settings.log_level).upper(),
        format="%(levelname)s %(name)s: %(message)s",
    )
    url = settings.database_url.get_secret_value()
    try:
        if arguments.command == "serve":
            return _serve(arguments, settings)
        if arguments.action == "adopt":
            count = asyncio.run(_adopt(url, arguments.email))
            print(f"{count} note(s) now belong to {normalize_email(arguments.email)}")
            return 0
        if arguments.action == "upgrade":
            migrate.upgrade(url, arguments.revision)
        elif arguments.action == "downgrade":
            migrate.downgrade(url, arguments.revision)
        current = migrate.current(url)
        print(", ".join(current) if current else "base (no migration applied)")
    except Exception as exc:  # the command line reports; it does not dump a traceback
        print(f"notes: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


async def _adopt(url: str, email: str) -> int:
    async with aiodatabases.Database(url) as database:
        accounts = AccountsRepository(database)
        account = await accounts.find_by_email(normalize_email(email))
        if account is None:
            raise LookupError(f"no account has the email address {normalize_email(email)}")
        return await accounts.adopt_orphans(account.id)


def _serve(arguments: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    url = settings.database_url.get_secret_value()
    migrate_first = arguments.migrate if arguments.migrate is not None else settings.is_embedded
    if migrate_first:
        migrate.upgrade(url)
    else:
        current, head = migrate.current(url), migrate.head()
        if head not in current:
            logger.warning(
                "the database is at %s, not at %s: run `notes db upgrade`",
                ", ".join(current) or "base",
                head,
            )
    where = f"http://{arguments.host}:{arguments.port}"
    print(f"Notes: {where}/docs (API under {where}/api/notes)", flush=True)
    uvicorn.run(
        "notes.app:create_app",
        factory=True,
        host=arguments.host,
        port=arguments.port,
        workers=arguments.workers,
        log_level=arguments.log_level or settings.log_level,
    )
    return 0
