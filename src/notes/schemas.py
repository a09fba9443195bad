"""The shapes of the API: what clients send and what they get back (pydantic v2)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypedDict

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "LINE_PATTERN",
    "MAX_BATCH",
    "MAX_BODY_BYTES",
    "MAX_PASSWORD",
    "MAX_TAGS",
    "MIN_PASSWORD",
    "Note",
    "NoteBatch",
    "NoteFields",
    "NoteIn",
    "NotePage",
    "NotePageFields",
    "NotePatch",
    "PasswordChange",
    "Problem",
    "RefreshRequest",
    "Registration",
    "Tag",
    "Title",
    "TokenPair",
    "User",
    "normalize_email",
    "note_page_json",
]

#: The largest note body, in bytes of UTF-8 (100 KiB).
MAX_BODY_BYTES = 100 * 1024
MAX_TITLE = 200
MAX_TAG = 50
MAX_TAGS = 20
#: The most notes one batch request may create.
MAX_BATCH = 100
#: Password lengths, in characters: any characters, spaces and emoji included.
MIN_PASSWORD = 8
MAX_PASSWORD = 256
MAX_EMAIL = 254


def _body_size(value: str) -> str:
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_BODY_BYTES:
        raise ValueError(f"must be at most {MAX_BODY_BYTES} bytes of UTF-8, not {size}")
    return value


#: What an email address must look like: something@domain.tld, with no whitespace or
#: control character anywhere. The OpenAPI schema carries the same pattern.
EMAIL_PATTERN = r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s\x00-\x1f\x7f-\x9f]+\.[^@\s\x00-\x1f\x7f-\x9f.]+$"

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def normalize_email(value: str) -> str:
    """Return an email address as accounts are keyed: ASCII letters lower-cased.

    Only ASCII: other letters keep their case, so the length never changes and no two
    scripts' case rules can make two different addresses one.
    """
    return value.translate(_ASCII_LOWER)


def _unique_tags(value: list[str]) -> list[str]:
    return list(dict.fromkeys(value))


#: One line of text with at least one visible character: no control character anywhere.
#: Checked before surrounding whitespace is trimmed, so the OpenAPI schema says exactly
#: what is accepted.
LINE_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
#: Any text but NUL, which no backend stores in a text column.
TEXT_PATTERN = r"^[^\x00]*$"


_LINE = re.compile(LINE_PATTERN)
_TEXT = re.compile(TEXT_PATTERN)
_EMAIL = re.compile(EMAIL_PATTERN)


def _line(value: str) -> str:
    """Refuse control characters and blank lines; trim surrounding whitespace."""
    if not _LINE.fullmatch(value):
        if not value.strip():
            raise PydanticCustomError(
                "string_too_short", "String should have at least 1 character", {"min_length": 1}
            )
        raise PydanticCustomError(
            "control_characters", "must not contain control characters (line breaks, tabs...)"
        )
    return value.strip()


def _text(value: str) -> str:
    if not _TEXT.fullmatch(value):
        raise PydanticCustomError("nul_character", "must not contain NUL characters")
    return value


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise PydanticCustomError(
            "email", "must be an email address such as ada@example.org, without spaces"
        )
    return normalize_email(value)


# Each type validates with readable errors, and states its rules in the OpenAPI schema as
# a pattern: the same regular expression, so that the schema says exactly what is accepted.
# Text with a lone surrogate (half of a pair, which JSON can escape) never gets this far:
# pydantic refuses it as string_unicode before any of these validators run.
Title = Annotated[
    str,
    StringConstraints(max_length=MAX_TITLE),
    AfterValidator(_line),
    WithJsonSchema({"type": "string", "maxLength": MAX_TITLE, "pattern": LINE_PATTERN}),
]
Body = Annotated[
    str,
    StringConstraints(max_length=MAX_BODY_BYTES),
    AfterValidator(_text),
    AfterValidator(_body_size),
    WithJsonSchema({"type": "string", "maxLength": MAX_BODY_BYTES, "pattern": TEXT_PATTERN}),
]
Tag = Annotated[
    str,
    StringConstraints(max_length=MAX_TAG),
    AfterValidator(_line),
    WithJsonSchema({"type": "string", "maxLength": MAX_TAG, "pattern": LINE_PATTERN}),
]
Email = Annotated[
    str,
    StringConstraints(min_length=5, max_length=MAX_EMAIL),
    AfterValidator(_email),
    WithJsonSchema(
        {"type": "string", "minLength": 5, "maxLength": MAX_EMAIL, "pattern": EMAIL_PATTERN}
    ),
]
Password = Annotated[str, StringConstraints(min_length=MIN_PASSWORD, max_length=MAX_PASSWORD)]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS), AfterValidator(_unique_tags)]


class NoteIn(BaseModel):
    """A note as a client creates it (POST) or replaces it whole (PUT)."""

    model_config = ConfigDict(extra="forbid")

    title: Title = Field(description="1 to 200 characters, on one line.")
    body: Body = Field(default="", description="Text, at most 100 KiB of UTF-8.")
    completed: bool = False
    tags: Tags = Field(
        default_factory=list,
        description="0 to 20 labels of 1 to 50 characters; repeats are dropped.",
    )


def _without_nulls(schema: dict[str, Any]) -> None:
    """Describe optional fields as absent-or-a-value: null is refused, so it is no option."""
    for name, prop in schema.get("properties", {}).items():
        options = [option for option in prop.get("anyOf", ()) if option != {"type": "null"}]
        if len(options) == 1 and "anyOf" in prop:
            rest = {key: value for key, value in prop.items() if key not in {"anyOf", "default"}}
            schema["properties"][name] = {**options[0], **rest}


class NotePatch(BaseModel):
    """The fields a PATCH changes; the others keep their value. None is not a value."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_without_nulls)

    title: Title | None = None
    body: Body | None = None
    completed: bool | None = None
    tags: Tags | None = None

    @model_validator(mode="before")
    @classmethod
    def _reject_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = sorted(str(key) for key, value in data.items() if value is None)
            if nulls:
                raise ValueError(f"null is not a value for {', '.join(nulls)}; leave it out")
        return data

    def changes(self) -> dict[str, Any]:
        """Return the fields the client sent, by name."""
        return self.model_dump(exclude_unset=True)


class NoteBatch(BaseModel):
    """Notes to create together: all of them or none."""

    model_config = ConfigDict(extra="forbid")

    notes: list[NoteIn] = Field(min_length=1, max_length=MAX_BATCH)


class Note(BaseModel):
    """A stored note."""

    id: int
    title: str
    body: str
    completed: bool
    tags: list[str]
    created_at: AwareDatetime
    updated_at: AwareDatetime
    version: int = Field(description="Grows by one with every change; the ETag carries it.")

    @property
    def etag(self) -> str:
        """The strong entity tag of this version of the note."""
        return f'"{self.id}.{self.version}"'


class NotePage(BaseModel):
    """One page of a listing."""

    items: list[Note]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )
    next_offset: int | None = Field(
        default=None, description="With `offset` paging: the offset of the next page."
    )


class NoteFields(TypedDict):
    """The fields of a ``Note``, as the repository reads them, in the same order (kept field
    for field equal to ``Note``; a test compares the two)."""

    id: int
    title: str
    body: str
    completed: bool
    tags: list[str]
    created_at: AwareDatetime
    updated_at: AwareDatetime
    version: int


class NotePageFields(TypedDict):
    """The fields of a ``NotePage``."""

    items: list[NoteFields]
    next_cursor: str | None
    next_offset: int | None


def note_page_json(page: NotePageFields) -> bytes:
    """Write ``page`` as exactly the JSON of the ``NotePage`` it makes (a test compares them).

    Without building and validating twenty models first, which took twice as long as writing
    them, for values the repository has just read from its own columns; and with orjson, which
    writes the same bytes as Pydantic in a third of its time (5.7 against 16.6 µs for a page of
    twenty). Timestamps are aware and in UTC, which both write with a ``Z``.
    """
    return orjson.dumps(page, option=orjson.OPT_UTC_Z)


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None


class Registration(BaseModel):
    """A new account: an email address and a password of 8 to 256 characters."""

    model_config = ConfigDict(extra="forbid")

    email: Email = Field(
        description="An address such as ada@example.org; ASCII letters are lower-cased, "
        "and an address has one account."
    )
    password: Password = Field(description="8 to 256 characters, any characters.")


class User(BaseModel):
    """An account as its owner sees it; never a password or a hash."""

    id: int
    email: str
    created_at: AwareDatetime


class TokenPair(BaseModel):
    """What a login or a refresh answers (OAuth2 bearer token response, RFC 6749 5.1)."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds the access token stays valid.")
    refresh_token: str = Field(
        description="Trade it once at /api/auth/refresh for a new pair; using it twice "
        "ends the session."
    )


class RefreshRequest(BaseModel):
    """A refresh token to trade for a new token pair."""

    model_config = ConfigDict(extra="forbid")

    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class PasswordChange(BaseModel):
    """A password change: the current password, and the new one."""

    model_config = ConfigDict(extra="forbid")

    current_password: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PASSWORD)]
    new_password: Password = Field(description="8 to 256 characters, any characters.")
