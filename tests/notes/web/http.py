"""The pages as a browser uses them, over httpx: forms with their CSRF token, cookies."""

from __future__ import annotations

import html
import re

import httpx
from fastapi import FastAPI

from notes.accounts import AccountsRepository

PASSWORD = "a password of mine"

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
_FIELD_ERROR = re.compile(r'<p class="field-error" id="([a-z]+)-error">([^<]*)</p>')


def open_browser(app: FastAPI, base_url: str = "http://notes.test") -> httpx.AsyncClient:
    """A client of the app in-process that keeps cookies like a browser."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


def csrf_token(page: httpx.Response) -> str:
    """The CSRF token of the forms of a page."""
    found = _TOKEN.search(page.text)
    assert found is not None, page.text
    return found.group(1)


def field_errors(page: httpx.Response) -> dict[str, str]:
    """The messages shown next to the fields of a form, by field."""
    return {name: html.unescape(text) for name, text in _FIELD_ERROR.findall(page.text)}


async def sign_up(client: httpx.AsyncClient, email: str) -> None:
    """Sign up through the page; the client ends with the session cookie."""
    token = csrf_token(await client.get("/signup"))
    response = await client.post(
        "/signup", data={"email": email, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/?notice=welcome"


async def log_out(client: httpx.AsyncClient) -> None:
    """Log out through the header's form."""
    response = await client.post("/logout", data={"csrf_token": await page_token(client)})
    assert response.status_code == 303


async def page_token(client: httpx.AsyncClient) -> str:
    """The CSRF token of the forms the client is shown now, logged in or not."""
    page = await client.get("/notes/new")
    if page.status_code == 303:
        page = await client.get("/login")
    return csrf_token(page)


async def create(client: httpx.AsyncClient, title: str, **fields: str) -> int:
    """Create a note through the form; return its id."""
    data = {"title": title, "csrf_token": csrf_token(await client.get("/notes/new")), **fields}
    response = await client.post("/notes", data=data)
    assert response.status_code == 303, response.text
    return int(response.headers["location"].split("/")[2].split("?")[0])


async def user_id(app: FastAPI, email: str) -> int:
    """The id of the account of an email address."""
    account = await AccountsRepository(app.state.database).find_by_email(email)
    assert account is not None
    return account.id
