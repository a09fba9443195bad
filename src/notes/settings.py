"""Settings of the notes service, read from ``NOTES_*`` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_DATABASE_URL", "MAX_BODY_SIZE", "Settings"]

#: A SQLite file in the working directory: the service runs with nothing else set up.
DEFAULT_DATABASE_URL = "sqlite:///notes.db"

#: Request bodies larger than this are refused with 413 before they are parsed.
MAX_BODY_SIZE = 1024 * 1024


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
    docs: bool = Field(default=True, description="Serve /docs, /redoc and /openapi.json.")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    @property
    def is_embedded(self) -> bool:
        """True when the database is SQLite, which runs inside the service's process."""
        return self.database_url.get_secret_value().split(":", 1)[0].split("+")[0] == "sqlite"
