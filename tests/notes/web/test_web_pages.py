"""The pages over HTTP on every backend: what they read and write in the database.

These talk to the app in-process with httpx, as a browser does (cookies, forms, redirects),
and check what a browser test sees badly: status codes, and what is stored.
"""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute

from notes.repository import NotesRepository
from notes.schemas import NoteIn
from notes.web import account_pages, notes_pages

from ..conftest import add_user
from .http import PASSWORD, create, csrf_token, log_out, page_token, sign_up, user_id


def _web_posts() -> list[str]:
    """The paths of every POST route of the pages, from their routers."""
    paths = []
    for router in (account_pages.router, notes_pages.router):
        for route in router.routes:
            if isinstance(route, APIRoute) and "POST" in (route.methods or ()):
                paths.append(route.path)
    return sorted(paths)


async def test_every_form_of_the_pages_posted_without_its_csrf_token_is_refused(
    web_app: FastAPI, ada: httpx.AsyncClient
) -> None:
    """Each POST route of the pages answers 403 without the token, and nothing changes."""
    note_id = await create(ada, "keep me")
    posts = _web_posts()
    assert posts == [
        "/login",
        "/logout",
        "/notes",
        "/notes/{note_id}/delete",
        "/notes/{note_id}/edit",
        "/notes/{note_id}/toggle",
        "/signup",
    ]
    form = {
        "email": "ada@example.net",
        "password": PASSWORD,
        "title": "changed",
        "completed": "1",
        "version": "1",
    }
    for path in posts:
        url = path.replace("{note_id}", str(note_id))
        for extra in ({}, {"csrf_token": "forged"}):
            response = await ada.post(url, data={**form, **extra})
            assert response.status_code == 403, (url, extra)
            assert "This form has expired" in response.text
    page = await ada.get(f"/notes/{note_id}")
    assert page.status_code == 200
    assert "keep me" in page.text
    assert "Completed" not in page.text


async def test_a_wrong_password_and_an_unknown_email_get_the_same_message(
    visitor: httpx.AsyncClient,
) -> None:
    """The login form does not tell whether an account exists."""
    await sign_up(visitor, "known@example.net")
    await log_out(visitor)
    answers = []
    for email, password in (("known@example.net", "wrong password"), ("nobody@x.org", PASSWORD)):
        token = csrf_token(await visitor.get("/login"))
        response = await visitor.post(
            "/login", data={"email": email, "password": password, "csrf_token": token}
        )
        assert (
            "set-cookie" not in response.headers
            or "notes_session" not in (response.headers["set-cookie"])
        )
        answers.append(
            (response.status_code, re.findall(r'class="form-error"[^>]*>([^<]*)', response.text))
        )
    assert answers[0] == answers[1]
    assert answers[0] == (400, ["The email address or the password is wrong."])


async def test_logging_out_ends_the_session_even_for_a_copied_cookie(
    visitor: httpx.AsyncClient,
) -> None:
    """After logout, the old session cookie no longer opens any page."""
    await sign_up(visitor, "leaver@example.net")
    copied = visitor.cookies["notes_session"]
    await log_out(visitor)
    visitor.cookies.set("notes_session", copied, domain="notes.test")
    response = await visitor.get("/")
    assert response.status_code == 303
    assert response.headers["location"] == "/login"


async def test_the_list_pages_by_twenty_and_keeps_the_filters_in_its_links(
    web_app: FastAPI, ada: httpx.AsyncClient
) -> None:
    """25 matching notes: page 1 shows 20 and links to page 2, which shows the other 5."""
    owner = await user_id(web_app, "ada@example.net")
    notes = NotesRepository(web_app.state.database, owner_id=owner)
    await notes.create_many(
        [NoteIn(title=f"walk {i:02d}", tags=["dog"]) for i in range(25)]
        + [NoteIn(title="cat food", tags=["cat"])]
    )
    first = await ada.get("/", params={"tag": "dog"})
    assert first.text.count('class="note"') == 20
    assert 'href="/?tag=dog&amp;page=2" rel="next"' in first.text
    assert 'rel="prev"' not in first.text
    second = await ada.get("/", params={"tag": "dog", "page": "2"})
    assert second.text.count('class="note"') == 5
    assert 'href="/?tag=dog" rel="prev"' in second.text
    assert 'rel="next"' not in second.text
    assert "cat food" not in first.text + second.text


async def test_an_edit_form_loaded_before_an_api_change_gets_a_conflict_not_an_overwrite(
    web_app: FastAPI, ada: httpx.AsyncClient
) -> None:
    """The API changes the note after the form was loaded: the save shows a 409 conflict."""
    note_id = await create(ada, "shared", body="first")
    form = await ada.get(f"/notes/{note_id}/edit")
    assert 'name="version" value="1"' in form.text
    owner = await user_id(web_app, "ada@example.net")
    notes = NotesRepository(web_app.state.database, owner_id=owner)
    await notes.update(note_id, {"body": "from the API"})

    response = await ada.post(
        f"/notes/{note_id}/edit",
        data={"title": "shared", "body": "from the page", "version": "1",
              "csrf_token": csrf_token(form)},
    )  # fmt: skip
    assert response.status_code == 409
    assert "This note was changed meanwhile" in response.text
    assert "from the API" in response.text
    assert "from the page</textarea>" in response.text
    assert 'name="version" value="2"' in response.text
    assert (await notes.get(note_id)).body == "from the API"


async def test_a_delete_confirmed_before_a_change_asks_again_and_keeps_the_note(
    web_app: FastAPI, ada: httpx.AsyncClient
) -> None:
    """The confirmation was for version 1; the note is at 2: it is shown again, not deleted."""
    note_id = await create(ada, "keep or not")
    confirm = await ada.get(f"/notes/{note_id}/delete")
    assert 'name="version" value="1"' in confirm.text
    notes = NotesRepository(
        web_app.state.database, owner_id=await user_id(web_app, "ada@example.net")
    )
    await notes.update(note_id, {"title": "keep, changed"})
    response = await ada.post(
        f"/notes/{note_id}/delete", data={"version": "1", "csrf_token": csrf_token(confirm)}
    )
    assert response.status_code == 409
    assert "keep, changed" in response.text
    assert 'name="version" value="2"' in response.text
    assert (await notes.get(note_id)).title == "keep, changed"
    response = await ada.post(
        f"/notes/{note_id}/delete", data={"version": "2", "csrf_token": csrf_token(confirm)}
    )
    assert response.headers["location"] == "/?notice=deleted"
    assert (await ada.get(f"/notes/{note_id}")).status_code == 404


async def test_a_missing_or_foreign_note_is_a_404_page_not_problem_json(
    web_app: FastAPI, ada: httpx.AsyncClient
) -> None:
    """Pages answer errors with pages: a note of another user looks like no note at all."""
    _, _ = await add_user(web_app, "other@example.net")
    other = NotesRepository(
        web_app.state.database, owner_id=await user_id(web_app, "other@example.net")
    )
    foreign = await other.create(NoteIn(title="private plans"))
    for path in (f"/notes/{foreign.id}", f"/notes/{foreign.id}/edit", "/notes/999999", "/notes/x"):
        response = await ada.get(path)
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("text/html")
        assert "private plans" not in response.text
    token = await page_token(ada)
    response = await ada.post(
        f"/notes/{foreign.id}/toggle", data={"completed": "1", "csrf_token": token}
    )
    assert response.status_code == 404
    assert not (await other.get(foreign.id)).completed


async def test_the_toggle_answers_json_to_the_script_and_a_redirect_to_a_plain_form(
    ada: httpx.AsyncClient,
) -> None:
    """With Accept: JSON the toggle says the new state; without, it goes back where it was."""
    note_id = await create(ada, "toggle me")
    token = await page_token(ada)
    response = await ada.post(
        f"/notes/{note_id}/toggle",
        data={"completed": "1", "csrf_token": token},
        headers={"Accept": "application/json"},
    )
    assert response.json() == {"id": note_id, "completed": True, "version": 2}
    for target, expected in (("/?status=open", "/?status=open"), ("https://evil.example", "/")):
        response = await ada.post(
            f"/notes/{note_id}/toggle",
            data={"completed": "0", "next": target, "csrf_token": token},
        )
        assert response.status_code == 303
        assert response.headers["location"] == expected
