"""The web pages of the service: server-rendered, working without JavaScript, at ``/``.

``install_web(app, settings)`` adds the pages, their static files and the key that signs
session cookies and CSRF tokens. The pages call the same repository and the same accounts
as the JSON API; they log in with a cookie, the API with bearer tokens.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ..settings import Settings
from ..tokens import load_secret
from .account_pages import router as account_router
from .notes_pages import router as notes_router
from .rendering import STATIC_PATH, static_directory
from .security import Signer

__all__ = ["install_web"]


def install_web(app: FastAPI, settings: Settings) -> None:
    """Add the pages and their static files to the application."""
    app.state.web_signer = Signer(load_secret(settings))
    app.mount(STATIC_PATH, StaticFiles(directory=static_directory()), name="web-static")
    app.include_router(account_router)
    app.include_router(notes_router)
