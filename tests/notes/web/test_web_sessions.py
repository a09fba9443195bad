"""Sessions, CSRF, headers and form errors of the pages, over HTTP, on SQLite.

Nothing here depends on the database behind the pages, so it runs on one backend; what
reads and writes notes runs on all of them (``test_web_pages.py``).
"""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI

from ..conftest import add_user
from .http import (
    PASSWORD,
    csrf_token,
    field_errors,
    log_out,
    open_browser,
    page_token,
    sign_up,
)


@pytest.fixture
def web_app(sqlite_web_app: FastAPI) -> FastAPI:
    """The pages on SQLite only."""
    return sqlite_web_app


async def test_the_csrf_token_of_one_user_does_not_work_for_another(web_app: FastAPI) -> None:
    """A token lifted from another session (or from before login) is refused."""
    async with open_browser(web_app) as first, open_browser(web_app) as second:
        anonymous_token = csrf_token(await first.get("/login"))
        await sign_up(first, "one@example.net")
        await sign_up(second, "two@example.net")
        for stolen in (await page_token(first), anonymous_token):
            response = await second.post("/notes", data={"title": "x", "csrf_token": stolen})
            assert response.status_code == 403


async def test_a_form_posted_from_another_origin_is_refused(ada: httpx.AsyncClient) -> None:
    """Even with a valid token, a form whose Origin is another site does nothing."""
    token = await page_token(ada)
    response = await ada.post(
        "/notes",
        data={"title": "x", "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    same = await ada.post(
        "/notes", data={"title": "x", "csrf_token": token}, headers={"Origin": "http://notes.test"}
    )
    assert same.status_code == 303


async def test_the_session_cookie_is_httponly_and_lax_and_secure_over_https(
    web_app: FastAPI,
) -> None:
    """Cookies of the pages: HttpOnly and SameSite=Lax always; Secure when served on HTTPS."""
    for base_url, secure in (("http://notes.test", False), ("https://notes.test", True)):
        async with open_browser(web_app, base_url) as client:
            signup = await client.get("/signup")
            token = csrf_token(signup)
            response = await client.post(
                "/signup",
                data={"email": f"cookie{int(secure)}@example.net", "password": PASSWORD,
                      "csrf_token": token},
            )  # fmt: skip
            cookies = [signup.headers["set-cookie"], response.headers["set-cookie"]]
            assert cookies[1].startswith("notes_session=")
            for cookie in cookies:
                flags = [part.strip().lower() for part in cookie.split(";")]
                assert "httponly" in flags
                assert "samesite=lax" in flags
                assert ("secure" in flags) is secure


async def test_pages_ask_for_a_login_and_come_back_after_it(visitor: httpx.AsyncClient) -> None:
    """A page opened logged out leads to the login form, and from it back to the page."""
    response = await visitor.get("/notes/new")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fnotes%2Fnew"
    posted = await visitor.post("/notes", data={"title": "x"})
    assert posted.status_code == 303
    assert posted.headers["location"] == "/login"
    await sign_up(visitor, "back@example.net")
    await log_out(visitor)
    login = await visitor.get("/login", params={"next": "/notes/new"})
    response = await visitor.post(
        "/login",
        data={
            "email": "BACK@example.net",
            "password": PASSWORD,
            "next": "/notes/new",
            "csrf_token": csrf_token(login),
        },
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/notes/new"


async def test_the_api_keeps_bearer_tokens_and_ignores_the_session_cookie(
    web_app: FastAPI, ada: httpx.AsyncClient
) -> None:
    """A logged-in browser's cookie does not open the JSON API; a bearer token no page."""
    response = await ada.get("/api/notes")
    assert response.status_code == 401
    _, token = await add_user(web_app, "bearer@example.net")
    async with open_browser(web_app) as client:
        page = await client.get("/", headers={"Authorization": f"Bearer {token}"})
        assert page.status_code == 303
        assert page.headers["location"] == "/login"


async def test_form_errors_are_shown_next_to_their_fields(ada: httpx.AsyncClient) -> None:
    """An invalid note comes back (422) with what was typed and a message per field."""
    token = await page_token(ada)
    tags = ", ".join(f"t{i}" for i in range(21))
    response = await ada.post(
        "/notes", data={"title": "  ", "body": "kept body", "tags": tags, "csrf_token": token}
    )
    assert response.status_code == 422
    assert field_errors(response) == {
        "title": "Give the note a title, on one line.",
        "tags": "A note has at most 20 tags.",
    }
    assert "kept body</textarea>" in response.text
    assert 'aria-invalid="true" aria-describedby="title-error"' in response.text

    response = await ada.post(
        "/notes", data={"title": "x" * 201, "tags": "a" * 51, "csrf_token": token}
    )
    assert field_errors(response) == {
        "title": "A title has at most 200 characters.",
        "tags": "A tag has at most 50 characters.",
    }

    response = await ada.post(
        "/notes",
        data={
            "title": "two\tcolumns",
            "tags": "a\x01b",
            "csrf_token": token,
        },
    )
    assert response.status_code == 422
    assert set(field_errors(response)) == {"title", "tags"}
    assert "pattern" not in response.text  # a sentence for a person, never a regex


async def test_sign_up_errors_are_shown_next_to_their_fields(visitor: httpx.AsyncClient) -> None:
    """A bad address, a short password and a taken address each get their message."""
    token = csrf_token(await visitor.get("/signup"))
    response = await visitor.post(
        "/signup", data={"email": "not-an-address", "password": "short", "csrf_token": token}
    )
    assert response.status_code == 422
    errors = field_errors(response)
    assert errors["password"] == "A password has at least 8 characters."
    assert errors["email"] == "Enter an email address such as ada@example.org."
    await sign_up(visitor, "taken@example.net")
    await log_out(visitor)
    token = csrf_token(await visitor.get("/signup"))
    response = await visitor.post(
        "/signup", data={"email": "Taken@example.net", "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 422
    assert field_errors(response)["email"].startswith("An account with this email")


async def test_pages_forbid_inline_script_framing_and_caching(ada: httpx.AsyncClient) -> None:
    """Every page carries a CSP without inline script, no framing, and no-store."""
    for path in ("/", "/notes/new", "/login", "/notes/424242"):
        response = await ada.get(path)
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"


async def test_the_stylesheet_and_script_are_served_by_the_service(
    visitor: httpx.AsyncClient,
) -> None:
    """The pages load nothing from the internet: their assets are local and versioned."""
    page = await visitor.get("/login")
    assets = re.findall(r'(?:href|src)="(/static/web/[^"]+)"', page.text)
    assert len(assets) == 2
    for asset in assets:
        response = await visitor.get(asset)
        assert response.status_code == 200
    assert not re.findall(r'(?:href|src)="(?:https?:)?//', page.text)


async def test_too_many_failed_logins_get_a_page_that_says_to_wait(
    visitor: httpx.AsyncClient,
) -> None:
    """The account throttle of the API holds for the login page too: 429 and a message."""
    await sign_up(visitor, "guessed@example.net")
    await log_out(visitor)
    token = await page_token(visitor)
    statuses = []
    for _ in range(11):
        response = await visitor.post(
            "/login",
            data={"email": "guessed@example.net", "password": "not it at all", "csrf_token": token},
        )
        statuses.append(response.status_code)
    assert statuses == [400] * 10 + [429]
    assert "Too many failed attempts" in response.text
    response = await visitor.post(
        "/login", data={"email": "guessed@example.net", "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 429


async def test_a_form_over_the_size_limit_is_refused_and_saves_nothing(
    ada: httpx.AsyncClient,
) -> None:
    """A form body over 1 MiB is refused with 413 before it is read; no note appears."""
    token = await page_token(ada)
    response = await ada.post(
        "/notes", data={"title": "big", "body": "x" * (1024 * 1024 + 1), "csrf_token": token}
    )
    assert response.status_code == 413
    assert 'class="note"' not in (await ada.get("/")).text
