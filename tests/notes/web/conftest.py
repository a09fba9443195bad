"""Fixtures of the web page tests: a live server on SQLite and Debian's headless Chromium.

The browser is the system's own (``/usr/bin/chromium`` driven by ``/usr/bin/chromedriver``
through Selenium); nothing is downloaded. Without them the browser tests skip on a laptop
and fail in CI (``scripts/install`` installs both as root). One server and one browser serve
every browser test of a run; each test signs up its own users, so tests share nothing else.

Screenshots go to a temporary folder, or to ``NOTES_WEB_SCREENSHOTS`` when it is set
(``NOTES_WEB_SCREENSHOTS=docs/screenshots`` refreshes the pictures of the docs).
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver

from notes import Settings, create_app
from notes import migrate as migrate_module

from ...conftest import running_in_ci
from ..conftest import TEST_SECRET
from .http import open_browser, sign_up

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

#: Flags that let Chromium run headless as root in a container, quietly and offline.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--lang=en-US",
)

DESKTOP = (1280, 900)
PHONE = (390, 844)


@dataclass(frozen=True, slots=True)
class LiveServer:
    """A notes service listening on 127.0.0.1 in a thread of the test process."""

    url: str
    database_url: str


def _browser_missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return f"{path} is missing (install Debian's chromium and chromium-driver)"
    return None


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The notes service on a fresh, migrated SQLite file, served by uvicorn on a free port."""
    folder = tmp_path_factory.mktemp("web")
    database_url = f"sqlite:///{folder / 'notes.db'}"
    migrate_module.upgrade(database_url)
    settings = Settings(
        database_url=SecretStr(database_url), jwt_secret=SecretStr("web-tests-" + "s" * 40)
    )
    app = create_app(settings)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="live-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live notes server did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(url=f"http://127.0.0.1:{port}", database_url=database_url)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One headless Chromium for the whole run (a Selenium WebDriver)."""
    missing = _browser_missing()
    if missing is not None:
        if running_in_ci():
            pytest.fail(f"the browser tests need a browser in CI: {missing}")
        pytest.skip(missing)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    # No password manager bubbles or "save card" prompts in the screenshots.
    options.add_experimental_option(
        "prefs", {"credentials_enable_service": False, "profile.password_manager_enabled": False}
    )
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(10)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium: WebDriver, live_server: LiveServer) -> Iterator[WebDriver]:
    """The shared browser, on a desktop-sized window with no cookies and scripts on."""
    chromium.get(f"{live_server.url}/login")
    chromium.delete_all_cookies()
    chromium.set_window_size(*DESKTOP)
    yield chromium
    chromium.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})
    chromium.delete_all_cookies()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser tests save pictures of the pages."""
    configured = os.environ.get("NOTES_WEB_SCREENSHOTS")
    folder = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


_emails = itertools.count(1)


@pytest.fixture
def new_email() -> Callable[[str], str]:
    """Return a function that makes an email address no other test of this run uses."""

    def make(name: str) -> str:
        return f"{name}{next(_emails)}@example.org"

    return make


@pytest.fixture
async def web_app(app: FastAPI) -> FastAPI:
    """The app of the notes tests (every backend), with its pages."""
    return app


@pytest.fixture
async def sqlite_web_app(migrated_sqlite_template: Path, tmp_path: Path) -> AsyncIterator[FastAPI]:
    """An app on a fresh SQLite file: for what does not depend on the database."""
    path = tmp_path / "web.db"
    shutil.copyfile(migrated_sqlite_template, path)
    settings = Settings(
        database_url=SecretStr(f"sqlite:///{path}"), jwt_secret=SecretStr(TEST_SECRET)
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def visitor(web_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client of ``web_app``, not logged in."""
    async with open_browser(web_app) as client:
        yield client


@pytest.fixture
async def ada(visitor: httpx.AsyncClient) -> httpx.AsyncClient:
    """The visitor, signed up and logged in as ada@example.net."""
    await sign_up(visitor, "ada@example.net")
    return visitor
