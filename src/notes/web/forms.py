"""Posted forms into the API's schemas, and validation errors into messages by field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData

from ..schemas import MAX_PASSWORD, MAX_TAG, MAX_TAGS, MAX_TITLE, MIN_PASSWORD, NoteIn, Registration

__all__ = ["NoteForm", "field_errors", "read_note_form", "read_registration"]

#: Messages for the errors a person is likely to make, by (field, pydantic error type).
_MESSAGES = {
    ("title", "string_too_short"): "Give the note a title, on one line.",
    ("title", "missing"): "Give the note a title, on one line.",
    ("title", "string_too_long"): f"A title has at most {MAX_TITLE} characters.",
    ("tags", "too_long"): f"A note has at most {MAX_TAGS} tags.",
    ("tags", "string_too_long"): f"A tag has at most {MAX_TAG} characters.",
    # Patterns of the schemas: a person gets a sentence, never the regular expression.
    ("title", "string_pattern_mismatch"): "Give the note a title, on one line.",
    ("title", "control_characters"): "Give the note a title, on one line.",
    ("tags", "string_pattern_mismatch"): "A tag is one line of text.",
    ("tags", "control_characters"): "A tag is one line of text.",
    ("body", "string_pattern_mismatch"): "The body cannot contain NUL characters.",
    ("email", "missing"): "Enter your email address.",
    ("password", "string_too_short"): f"A password has at least {MIN_PASSWORD} characters.",
    ("password", "missing"): f"A password has at least {MIN_PASSWORD} characters.",
    ("password", "string_too_long"): f"A password has at most {MAX_PASSWORD} characters.",
}


def field_errors(error: ValidationError) -> dict[str, str]:
    """Return one message per field of a validation error (the first error of each)."""
    messages: dict[str, str] = {}
    for item in error.errors(include_url=False, include_input=False):
        location = item.get("loc") or ("form",)
        name = str(location[0])
        if name in messages:
            continue
        message = _MESSAGES.get((name, item["type"]))
        if message is None and name == "email":
            message = "Enter an email address such as ada@example.org."
        if message is None and item["type"] == "string_pattern_mismatch":
            message = "This contains characters that are not allowed here."
        if message is None:
            text = str(item.get("msg", "is not valid"))
            text = text.removeprefix("Value error, ")
            message = text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
        messages[name] = message
    return messages


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


@dataclass(slots=True)
class NoteForm:
    """The fields of the note form as typed, to show them again next to their errors."""

    title: str = ""
    body: str = ""
    tags: str = ""
    completed: bool = False
    errors: dict[str, str] = field(default_factory=dict)
    note: NoteIn | None = None

    @classmethod
    def of(cls, title: str, body: str, tags: list[str], completed: bool) -> NoteForm:
        """The form filled with a stored note."""
        return cls(title=title, body=body, tags=", ".join(tags), completed=completed)


def read_note_form(form: FormData) -> NoteForm:
    """Read and validate the note form; ``.note`` is set when it is valid."""
    # Browsers send line breaks of a textarea as CRLF.
    result = NoteForm(
        title=_text(form, "title"),
        body=_text(form, "body").replace("\r\n", "\n"),
        tags=_text(form, "tags"),
        completed=form.get("completed") in {"1", "on", "true"},
    )
    tags = [tag.strip() for tag in result.tags.split(",") if tag.strip()]
    data: dict[str, Any] = {
        "title": result.title,
        "body": result.body,
        "tags": tags,
        "completed": result.completed,
    }
    try:
        result.note = NoteIn.model_validate(data)
    except ValidationError as exc:
        result.errors = field_errors(exc)
    return result


def read_registration(form: FormData) -> tuple[Registration | None, dict[str, str]]:
    """Read and validate the sign-up form: the registration, or messages by field."""
    try:
        return (
            Registration.model_validate(
                {"email": _text(form, "email"), "password": _text(form, "password")}
            ),
            {},
        )
    except ValidationError as exc:
        return None, field_errors(exc)
