"""Settings of the notes service, read from ``NOTES_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "ARGON2_MIN_MEMORY_KIB",
    "ARGON2_MIN_TIME_COST",
    "DEFAULT_DATABASE_URL",
    "MAX_BODY_SIZE",
    "MIN_SECRET_LENGTH",
    "Settings",
]

#: A SQLite file in the working directory: the service runs with nothing else set up.
DEFAULT_DATABASE_URL = "sqlite:///notes.db"

#: Request bodies larger than this are refused with 413 before they are parsed.
MAX_BODY_SIZE = 1024 * 1024

#: OWASP's floor for Argon2id (Password Storage Cheat Sheet): 19 MiB, 2 passes, 1 lane.
ARGON2_MIN_MEMORY_KIB = 19456
ARGON2_MIN_TIME_COST = 2

#: The shortest signing secret accepted, in characters (HS256 wants 256 bits of key).
MIN_SECRET_LENGTH = 32


class Settings(BaseSettings):
    """Configuration of one notes application; immutable once built.

    Every field can be set from the environment with the ``NOTES_`` prefix, for example
    ``NOTES_DATABASE_URL=postgresql://user:secret@db/notes``.
    """

    model_config = SettingsConfigDict(env_prefix="NOTES_", frozen=True, extra="ignore")

    database_url: SecretStr = Field(
        default=SecretStr(DEFAULT_DATABASE_URL),
        description="The aiodatabases URL; it may hold a password, so it is kept secret.",
    )
    max_body_size: int = Field(
        default=MAX_BODY_SIZE, gt=0, description="Largest accepted request body, in bytes."
    )
    ready_timeout: float = Field(
        default=2.0, gt=0, description="Seconds /health/ready waits for the database."
    )
    search_index_interval: float = Field(
        default=0.5,
        gt=0,
        le=3600,
        description="SQLite: seconds between background passes that index new and changed "
        "notes for search (a search indexes what is still waiting first).",
    )
    docs: bool = Field(default=True, description="Serve /docs, /redoc and /openapi.json.")
    tune_gc: bool = Field(
        default=True,
        description="While running, freeze the objects made at startup out of Python's garbage "
        "collections and collect its youngest generation less often (notes.memory).",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    jwt_secret: SecretStr | None = Field(
        default=None,
        min_length=MIN_SECRET_LENGTH,
        description="The secret that signs access tokens. Required on a server database; on "
        "the embedded default one is generated once into secret_file.",
    )
    jwt_previous_secrets: list[SecretStr] = Field(
        default_factory=list,
        description="Former signing secrets whose tokens are still accepted (key rotation).",
    )
    secret_file: Path | None = Field(
        default=None,
        description="Where the generated secret is kept (mode 0600); default: the SQLite "
        "database's path with '.secret' appended.",
    )
    access_token_seconds: int = Field(default=900, gt=0, le=86_400)
    refresh_token_seconds: int = Field(default=30 * 86_400, gt=0)
    argon2_memory_kib: int = Field(default=ARGON2_MIN_MEMORY_KIB, ge=ARGON2_MIN_MEMORY_KIB)
    argon2_time_cost: int = Field(default=ARGON2_MIN_TIME_COST, ge=ARGON2_MIN_TIME_COST)
    argon2_parallelism: int = Field(default=1, ge=1, le=16)
    login_max_failures: int = Field(
        default=10, gt=0, description="Failed logins of one account before it gets 429."
    )
    login_window_seconds: int = Field(
        default=900, gt=0, description="The window in which failed logins are counted."
    )

    @property
    def is_embedded(self) -> bool:
        """True when the database is SQLite, which runs inside the service's process."""
        return self.database_url.get_secret_value().split(":", 1)[0].split("+")[0] == "sqlite"
