"""The notes API under /api: create, read, replace, patch, delete, list, search, batch."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Header, Path, Request, Response, status
from pydantic import BaseModel, Field

from ..deps import Repository, get_repository
from ..pagination import Sort
from ..repository import MAX_PAGE_SIZE, ListQuery
from ..schemas import (
    MAX_BATCH,
    Note,
    NoteBatch,
    NoteIn,
    NotePage,
    NotePatch,
    Problem,
    Tag,
    note_page_json,
)
from .query import QueryModel

__all__ = ["router"]

_PROBLEM = {"model": Problem, "content": {"application/problem+json": {}}}

router = APIRouter(
    prefix="/notes",
    tags=["notes"],
    responses={
        401: {
            **_PROBLEM,
            "description": "No valid access token (see WWW-Authenticate).",
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
        },
        400: {**_PROBLEM, "description": "The body cannot be parsed (not JSON, not UTF-8)."},
        422: {**_PROBLEM, "description": "The request is not valid."},
    },
)

_ENTITY_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*(?:,|$)')

IfMatch = Annotated[
    str | None,
    Header(
        description='Change only if the note is still at this ETag ("*": if it exists). '
        "A stale ETag gets 412 and nothing is changed."
    ),
]
#: A note id: the key of a 64-bit signed column, so the database never sees one too large.
NoteId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The note's id.")]
IfNoneMatch = Annotated[
    str | None, Header(description="Answer 304 Not Modified when the ETag is still current.")
]


def _entity_tags(header: str) -> list[tuple[bool, str]]:
    """Parse a list of entity tags into (weak, opaque value) pairs; junk is skipped."""
    return [(bool(weak), value) for weak, value in _ENTITY_TAG.findall(header)]


def _versions(note_id: int, if_match: str | None) -> set[int] | None:
    """The versions of this note that an If-Match accepts; None when any version does.

    If-Match compares strongly: weak tags, and tags of other notes, match nothing.
    """
    if if_match is None or if_match.strip() == "*":
        return None
    versions: set[int] = set()
    for weak, value in _entity_tags(if_match):
        owner, _, version = value.partition(".")
        if not weak and owner == str(note_id) and version.isdigit():
            versions.add(int(version))
    return versions


def _not_modified(note: Note, if_none_match: str | None) -> bool:
    """True when If-None-Match names the note's current ETag (weak comparison) or is *."""
    if if_none_match is None:
        return False
    if if_none_match.strip() == "*":
        return True
    current = note.etag.strip('"')
    return any(value == current for _, value in _entity_tags(if_none_match))


def _etag_headers(note: Note) -> dict[str, str]:
    """The headers every answer carrying a note has: its ETag, and revalidate before reuse."""
    return {"ETag": note.etag, "Cache-Control": "no-cache"}


def _note_response(note: Note, *, status_code: int = 200, **headers: str) -> Response:
    """The Note (the routes' response_model) as FastAPI writes it, with its ETag headers,
    without validating it again: routes that read their repository themselves answer so."""
    return Response(
        note.model_dump_json(),
        status_code=status_code,
        media_type="application/json",
        headers={**headers, **_etag_headers(note)},
    )


#: The OpenAPI security of routes that read their repository themselves (``get_repository``
#: called in the route, not declared as a dependency, which FastAPI would resolve per request).
_BEARER: dict[str, Any] = {"security": [{get_repository.scheme_name: []}]}


def _with_etag(response: Response, note: Note) -> Note:
    response.headers.update(_etag_headers(note))
    return note


#: The collection URLs that Location headers start with, by what they are made of (scheme,
#: host, path): building a URL from the scope took longer than the rest of the headers.
#: Bounded, since the Host header is the client's to choose.
_COLLECTION_URLS: dict[tuple[Any, ...], str] = {}
_MAX_COLLECTION_URLS = 64


#: The encoded queries of next-page links without their cursor or offset, by their items: a
#: client walking the pages asks the same query with another cursor each time. Bounded in
#: count and in the length of what is kept, since the query is the client's to choose.
_KEPT_QUERIES: dict[tuple[tuple[str, str], ...], str] = {}
_MAX_KEPT_QUERIES = 256
_MAX_KEPT_QUERY_LENGTH = 512


def _kept_query(kept: tuple[tuple[str, str], ...]) -> str:
    """``urlencode(kept)``, remembered when short."""
    query = _KEPT_QUERIES.get(kept)
    if query is None:
        query = urlencode(kept)
        if len(query) <= _MAX_KEPT_QUERY_LENGTH:
            if len(_KEPT_QUERIES) >= _MAX_KEPT_QUERIES:
                _KEPT_QUERIES.clear()
            _KEPT_QUERIES[kept] = query
    return query


def _collection_url(request: Request) -> str:
    """This request's URL without its query or a trailing slash: the notes collection."""
    scope = request.scope
    server = scope.get("server")
    key = (
        scope.get("scheme"),
        tuple(server) if server is not None else None,  # a list from some servers
        scope.get("root_path"),
        scope["path"],
        request.headers.get("host"),
    )
    url = _COLLECTION_URLS.get(key)
    if url is None:
        url = str(request.url.replace(query="", fragment="")).rstrip("/")
        if len(_COLLECTION_URLS) >= _MAX_COLLECTION_URLS:
            _COLLECTION_URLS.clear()
        _COLLECTION_URLS[key] = url
    return url


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Note,
    summary="Create a note",
    responses={413: {**_PROBLEM, "description": "The body is over 1 MiB."}},
    openapi_extra=_BEARER,
)
async def create_note(note: NoteIn, request: Request) -> Response:
    """Create a note with its tags; answers 201 with its Location and ETag."""
    repository = await get_repository(request)
    created = await repository.create(note)
    # The note's URL is this collection's URL and its id: url_for() would search every route.
    return _note_response(
        created,
        status_code=status.HTTP_201_CREATED,
        Location=f"{_collection_url(request)}/{created.id}",
    )


@router.post(
    "/batch",
    status_code=status.HTTP_201_CREATED,
    response_model=list[Note],
    summary=f"Create up to {MAX_BATCH} notes at once: all or none",
)
async def create_notes(batch: NoteBatch, repository: Repository) -> list[Note]:
    """Create every note of the batch in one transaction; one invalid note fails them all."""
    return await repository.create_many(batch.notes)


class ListParams(BaseModel):
    """The query of a listing."""

    limit: int = Field(20, ge=1, le=MAX_PAGE_SIZE, description="Notes per page.")
    cursor: str | None = Field(
        None, max_length=1000, description="next_cursor of the previous page."
    )
    offset: int | None = Field(
        None, ge=0, le=1_000_000, description="Skip this many notes (instead of a cursor)."
    )
    sort: Sort | None = Field(
        None, description="Order; '-' for descending. Default: -created_at, or relevance with q."
    )
    completed: bool | None = Field(None, description="Only (un)completed notes.")
    tag: list[Tag] | None = Field(
        None, max_length=20, description="Only notes with this tag (repeat: all of them)."
    )
    q: str | None = Field(
        None,
        max_length=500,
        description="Words to search in titles and bodies; every word must appear.",
    )


#: The listing, the busiest route, reads its query and its repository itself rather than
#: declaring them as dependencies: FastAPI's resolution of a dependency costs more than the
#: work it wraps (the repository alone, some 15 µs of a 215 µs request). The document still
#: shows the parameters and the bearer scheme, through ``openapi_extra``.
_list_params = QueryModel(ListParams)
_LIST_OPENAPI = {**_list_params.openapi, **_BEARER}


@router.get(
    "",
    response_model=NotePage,
    summary="List, filter and search notes",
    openapi_extra=_LIST_OPENAPI,
    responses={
        400: {
            **_PROBLEM,
            "description": "A cursor that is not one given, or made for another sort; a "
            "cursor with an offset; sort=relevance without q.",
        }
    },
)
async def list_notes(request: Request) -> Response:
    """Return a page of notes and the cursor of the next one (keyset pagination)."""
    repository = await get_repository(request)
    params = await _list_params(request)
    q = params.q
    page = await repository.list_fields(
        ListQuery(
            limit=params.limit,
            cursor=params.cursor,
            offset=params.offset,
            sort=params.sort,
            completed=params.completed,
            tags=[value.strip() for value in params.tag or ()],
            q=q if q is not None and q.strip() else None,
        )
    )
    headers: dict[str, str] = {}
    next_cursor, next_offset = page["next_cursor"], page["next_offset"]
    if next_cursor is not None:
        # The same query, with the next page's cursor or offset in place of this page's.
        kept = tuple(
            [
                (key, value)
                for key, value in request.query_params.multi_items()
                if key not in ("cursor", "offset")
            ]
        )
        # As urlencode() would write them: an integer, and encode_cursor()'s base64url text,
        # whose characters (letters, digits, "-", "_") are all left as they are.
        if next_offset is not None:
            following = f"offset={int(next_offset)}"
        else:
            following = f"cursor={next_cursor}"
        query = _kept_query(kept)
        if query:
            following = f"{query}&{following}"
        headers["Link"] = f'<{_collection_url(request)}?{following}>; rel="next"'
    # The JSON of the NotePage (response_model, for the documentation), written directly.
    return Response(note_page_json(page), media_type="application/json", headers=headers)


@router.get(
    "/{note_id}",
    response_model=Note,
    summary="Read a note",
    responses={
        304: {"description": "Not modified: If-None-Match holds the current ETag."},
        404: {**_PROBLEM, "description": "No such note."},
    },
    openapi_extra=_BEARER,
)
async def get_note(
    note_id: NoteId, request: Request, if_none_match: IfNoneMatch = None
) -> Response:
    """Return a note with its ETag; 304 when the client's copy (If-None-Match) is current."""
    repository = await get_repository(request)
    note = await repository.get(note_id)
    if _not_modified(note, if_none_match):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=_etag_headers(note))
    return _note_response(note)


_WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {**_PROBLEM, "description": "No such note."},
    412: {**_PROBLEM, "description": "If-Match is stale: the note changed meanwhile."},
    413: {**_PROBLEM, "description": "The body is over 1 MiB."},
}


@router.put("/{note_id}", response_model=Note, summary="Replace a note", responses=_WRITE_RESPONSES)
async def replace_note(
    note_id: NoteId,
    note: NoteIn,
    response: Response,
    repository: Repository,
    if_match: IfMatch = None,
) -> Note:
    """Replace every field of a note; with If-Match, only if it has not changed since."""
    replaced = await repository.replace(note_id, note, versions=_versions(note_id, if_match))
    return _with_etag(response, replaced)


@router.patch(
    "/{note_id}",
    response_model=Note,
    summary="Change some fields of a note",
    responses=_WRITE_RESPONSES,
)
async def patch_note(
    note_id: NoteId,
    patch: NotePatch,
    response: Response,
    repository: Repository,
    if_match: IfMatch = None,
) -> Note:
    """Change the fields sent (JSON merge patch); with If-Match, only if it is current."""
    changed = await repository.update(
        note_id, patch.changes(), versions=_versions(note_id, if_match)
    )
    return _with_etag(response, changed)


@router.delete(
    "/{note_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a note",
    responses={k: v for k, v in _WRITE_RESPONSES.items() if k != 413},
)
async def delete_note(
    note_id: NoteId, repository: Repository, if_match: IfMatch = None
) -> Response:
    """Delete a note and its tags; with If-Match, only if it has not changed since."""
    await repository.delete(note_id, versions=_versions(note_id, if_match))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
