"""Sort orders and opaque page cursors of note listings (no SQL here)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import json
from dataclasses import dataclass
from typing import Any

from .errors import BadRequestError

__all__ = ["Cursor", "Sort", "decode_cursor", "encode_cursor"]


class Sort(enum.StrEnum):
    """The orders a listing may ask for; ``-`` means descending. Ties go by id."""

    CREATED_AT = "created_at"
    CREATED_AT_DESC = "-created_at"
    UPDATED_AT = "updated_at"
    UPDATED_AT_DESC = "-updated_at"
    TITLE = "title"
    TITLE_DESC = "-title"
    RELEVANCE = "relevance"

    @property
    def column(self) -> str:
        """The column sorted on (``relevance`` has none: it is computed)."""
        return self.value.lstrip("-")

    @property
    def descending(self) -> bool:
        """True for the descending orders (and relevance: best first)."""
        return self.value.startswith("-")


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ends: the sort key and id of its last note, or an offset (relevance)."""

    sort: Sort
    value: Any = None
    id: int = 0
    offset: int = 0


def encode_cursor(cursor: Cursor) -> str:
    """Return the opaque, URL-safe text of a cursor.

    The text is base64url of compact JSON: ``{"s":sort,"o":offset}`` for relevance, else
    ``{"s":sort,"v":value,"i":id}`` with a timestamp in ISO 8601. Every page but the last
    writes one, so the JSON is put together here rather than by ``json.dumps``: a sort name,
    an ISO timestamp and an integer need no escaping; a title does, and gets it.
    """
    if cursor.sort is Sort.RELEVANCE:
        raw = f'{{"s":"{cursor.sort.value}","o":{int(cursor.offset)}}}'
    else:
        value = cursor.value
        if isinstance(value, dt.datetime):
            text = f'"{value.isoformat()}"'
        else:
            text = json.dumps(value, ensure_ascii=False)
        raw = f'{{"s":"{cursor.sort.value}","v":{text},"i":{int(cursor.id)}}}'
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode("ascii")


def decode_cursor(text: str, sort: Sort) -> Cursor:
    """Read a cursor made by ``encode_cursor`` for this sort order.

    Raises:
        BadRequestError: The text is not such a cursor, or it was made for another order.
    """
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = json.loads(raw)
        made_for = Sort(data["s"])
        if made_for is not sort:
            raise BadRequestError(
                f"this cursor belongs to sort={made_for.value}, not sort={sort.value}; "
                "keep the query of the first page when following next_cursor"
            )
        if sort is Sort.RELEVANCE:
            offset = data["o"]
            if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
                raise ValueError("bad offset")
            return Cursor(sort, offset=offset)
        note_id, value = data["i"], data["v"]
        if not isinstance(note_id, int) or isinstance(note_id, bool):
            raise ValueError("bad id")
        if not isinstance(value, str) or "\x00" in value:
            raise ValueError("bad value")
        if sort.column != "title":
            parsed = dt.datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                raise ValueError("naive timestamp")
            return Cursor(sort, parsed, note_id)
        return Cursor(sort, value, note_id)
    except BadRequestError:
        raise
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadRequestError("the cursor is not valid; use a next_cursor as given") from exc
