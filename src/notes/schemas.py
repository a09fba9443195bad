"""The shapes of the API: what clients send and what they get back (pydantic v2)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

__all__ = [
    "MAX_BATCH",
    "MAX_BODY_BYTES",
    "MAX_TAGS",
    "Note",
    "NoteBatch",
    "NoteIn",
    "NotePage",
    "NotePatch",
    "Problem",
    "Tag",
    "Title",
]

#: The largest note body, in bytes of UTF-8 (100 KiB).
MAX_BODY_BYTES = 100 * 1024
MAX_TITLE = 200
MAX_TAG = 50
MAX_TAGS = 20
#: The most notes one batch request may create.
MAX_BATCH = 100


def _no_control_characters(value: str) -> str:
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValueError("must not contain control characters (line breaks, tabs...)")
    return value


def _body_size(value: str) -> str:
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_BODY_BYTES:
        raise ValueError(f"must be at most {MAX_BODY_BYTES} bytes of UTF-8, not {size}")
    return value


def _unique_tags(value: list[str]) -> list[str]:
    return list(dict.fromkeys(value))


Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TITLE),
    AfterValidator(_no_control_characters),
]
Body = Annotated[str, AfterValidator(_body_size)]
Tag = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TAG),
    AfterValidator(_no_control_characters),
]
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


class NotePatch(BaseModel):
    """The fields a PATCH changes; the others keep their value. None is not a value."""

    model_config = ConfigDict(extra="forbid")

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


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
