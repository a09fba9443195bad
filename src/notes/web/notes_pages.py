"""The pages of notes: list with search and filters, view, create, edit, toggle, delete."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from ..errors import PreconditionFailedError
from ..repository import ListQuery
from .forms import NoteForm, read_note_form
from .rendering import WebRoute, redirect, render
from .security import safe_next
from .session import BrowserDep, RepositoryDep, checked_form

__all__ = ["PAGE_SIZE", "router"]

#: Notes per page of the list.
PAGE_SIZE = 20
_MAX_PAGE = 10_000
_STATUSES = {"all": None, "open": False, "done": True}

router = APIRouter(route_class=WebRoute, include_in_schema=False)


def _page_number(raw: str | None) -> int:
    if raw is None or not raw.isdigit():
        return 1
    return min(max(int(raw), 1), _MAX_PAGE)


def _list_url(q: str, tag: str, status: str, page: int) -> str:
    query = {"q": q, "tag": tag, "status": status if status != "all" else ""}
    if page > 1:
        query["page"] = str(page)
    kept = {key: value for key, value in query.items() if value}
    return f"/?{urlencode(kept)}" if kept else "/"


@router.get("/")
async def list_page(request: Request, browser: BrowserDep, notes: RepositoryDep) -> Response:
    """The notes of the user, searched, filtered by tag and completion, a page at a time."""
    params = request.query_params
    q = params.get("q", "").strip()[:500]
    tag = params.get("tag", "").strip()[:50]
    status = params.get("status", "all")
    if status not in _STATUSES:
        status = "all"
    page = _page_number(params.get("page"))
    result = await notes.list_page(
        ListQuery(
            limit=PAGE_SIZE,
            offset=(page - 1) * PAGE_SIZE,
            completed=_STATUSES[status],
            tags=[tag] if tag else (),
            q=q or None,
        )
    )
    context: dict[str, Any] = {
        "notes": result.items,
        "q": q,
        "tag": tag,
        "status": status,
        "page": page,
        "filtered": bool(q or tag or status != "all"),
        "here": _list_url(q, tag, status, page),
        "previous_url": _list_url(q, tag, status, page - 1) if page > 1 else None,
        "next_url": _list_url(q, tag, status, page + 1) if result.next_cursor else None,
    }
    return render(request, "list.html", context)


def _form_page(
    request: Request,
    form: NoteForm,
    *,
    note_id: int | None = None,
    version: int | None = None,
    conflict: Any = None,
    status_code: int = 200,
) -> Response:
    action = f"/notes/{note_id}/edit" if note_id is not None else "/notes"
    context = {
        "form": form,
        "errors": form.errors,
        "note_id": note_id,
        "version": version,
        "conflict": conflict,
        "action": action,
    }
    return render(request, "form.html", context, status_code=status_code)


@router.get("/notes/new")
async def new_note(request: Request, notes: RepositoryDep) -> Response:
    """An empty note form."""
    return _form_page(request, NoteForm())


@router.post("/notes")
async def create_note(request: Request, browser: BrowserDep, notes: RepositoryDep) -> Response:
    """Create a note from the form; the form comes back with its errors when it is invalid."""
    form = read_note_form(await checked_form(request, browser))
    if form.note is None:
        return _form_page(request, form, status_code=422)
    created = await notes.create(form.note)
    return redirect(f"/notes/{created.id}", notice="created")


@router.get("/notes/{note_id}")
async def view_note(request: Request, note_id: int, notes: RepositoryDep) -> Response:
    """One note, its body rendered from Markdown."""
    return render(request, "view.html", {"note": await notes.get(note_id)})


@router.get("/notes/{note_id}/edit")
async def edit_note(request: Request, note_id: int, notes: RepositoryDep) -> Response:
    """The form of a note, filled in; it remembers the version it was loaded at."""
    note = await notes.get(note_id)
    form = NoteForm.of(note.title, note.body, note.tags, note.completed)
    return _form_page(request, form, note_id=note.id, version=note.version)


@router.post("/notes/{note_id}/edit")
async def save_note(
    request: Request, note_id: int, browser: BrowserDep, notes: RepositoryDep
) -> Response:
    """Save the form over the note, unless the note changed since the form was loaded.

    A conflicting save overwrites nothing: the form comes back (409) with the user's text
    and the version saved meanwhile; saving it again then replaces that version.
    """
    posted = await checked_form(request, browser)
    form = read_note_form(posted)
    raw_version = posted.get("version")
    version = int(raw_version) if isinstance(raw_version, str) and raw_version.isdigit() else 0
    if form.note is None:
        await notes.get(note_id)  # a form for a note that is gone is a 404, not a 422
        return _form_page(request, form, note_id=note_id, version=version, status_code=422)
    try:
        await notes.replace(note_id, form.note, versions={version})
    except PreconditionFailedError:
        current = await notes.get(note_id)
        return _form_page(
            request,
            form,
            note_id=note_id,
            version=current.version,
            conflict=current,
            status_code=409,
        )
    return redirect(f"/notes/{note_id}", notice="saved")


@router.post("/notes/{note_id}/toggle")
async def toggle_note(
    request: Request, note_id: int, browser: BrowserDep, notes: RepositoryDep
) -> Response:
    """Set a note's completed flag to the value the button carries (so a repeat is harmless).

    The page's script asks for JSON and updates the list in place; without the script the
    browser follows the redirect back to where the button was.
    """
    form = await checked_form(request, browser)
    completed = form.get("completed") == "1"
    note = await notes.update(note_id, {"completed": completed})
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"id": note.id, "completed": note.completed, "version": note.version})
    target = form.get("next")
    return redirect(safe_next(target if isinstance(target, str) else None))


@router.get("/notes/{note_id}/delete")
async def confirm_delete(request: Request, note_id: int, notes: RepositoryDep) -> Response:
    """Ask before deleting a note."""
    return render(request, "delete.html", {"note": await notes.get(note_id), "stale": False})


@router.post("/notes/{note_id}/delete")
async def delete_note(
    request: Request, note_id: int, browser: BrowserDep, notes: RepositoryDep
) -> Response:
    """Delete the note that was confirmed; if it changed since, ask again."""
    form = await checked_form(request, browser)
    raw_version = form.get("version")
    version = int(raw_version) if isinstance(raw_version, str) and raw_version.isdigit() else 0
    try:
        await notes.delete(note_id, versions={version})
    except PreconditionFailedError:
        current = await notes.get(note_id)
        return render(request, "delete.html", {"note": current, "stale": True}, status_code=409)
    return redirect("/", notice="deleted")
