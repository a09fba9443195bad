"""What a person does in the browser, as small steps the browser tests are written in."""

from __future__ import annotations

from pathlib import Path

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from .conftest import LiveServer

PASSWORD = "correct horse battery"

#: Seconds a step waits for the page to show what it expects.
WAIT = 10


def waiting(driver: WebDriver) -> WebDriverWait[WebDriver]:
    """A wait of ``WAIT`` seconds that looks again when an element it read was replaced.

    An element found just before the browser swaps in the next page goes stale before its
    text is read; that means "not there yet", not a failure.
    """
    return WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,))


def wait_for(driver: WebDriver, css: str) -> WebElement:
    """Wait until an element matching a CSS selector is on the page, and return it."""
    return waiting(driver).until(lambda d: d.find_element(By.CSS_SELECTOR, css))


def wait_for_path(driver: WebDriver, server: LiveServer, path: str) -> None:
    """Wait until the browser shows a page whose URL (without query) is this path."""
    waiting(driver).until(lambda d: d.current_url.split("?", 1)[0] == f"{server.url}{path}")


def heading(driver: WebDriver) -> str:
    """The text of the page's first heading."""
    return wait_for(driver, "h1").text


def fill(driver: WebDriver, field_id: str, text: str) -> None:
    """Replace the text of an input or textarea."""
    element = driver.find_element(By.ID, field_id)
    element.clear()
    element.send_keys(text)


def submit(driver: WebDriver, form_css: str = "main form") -> None:
    """Click the submit button of a form and wait for the next page."""
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.CSS_SELECTOR, f"{form_css} button[type=submit]").click()
    waiting(driver).until(lambda d: _is_stale(old))


def _is_stale(element: WebElement) -> bool:
    try:
        element.is_enabled()
    except Exception:  # selenium's StaleElementReferenceException: a new page replaced it
        return True
    return False


def sign_up(driver: WebDriver, server: LiveServer, email: str) -> None:
    """Create an account through the sign-up page; it ends logged in, on the notes list."""
    driver.get(f"{server.url}/signup")
    fill(driver, "email", email)
    fill(driver, "password", PASSWORD)
    submit(driver)
    wait_for_path(driver, server, "/")


def log_in(driver: WebDriver, server: LiveServer, email: str) -> None:
    """Log in through the login page; it ends on the notes list."""
    driver.get(f"{server.url}/login")
    fill(driver, "email", email)
    fill(driver, "password", PASSWORD)
    submit(driver)
    wait_for_path(driver, server, "/")


def log_out(driver: WebDriver) -> None:
    """Click "Log out" in the header."""
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.CSS_SELECTOR, "form[action='/logout'] button").click()
    waiting(driver).until(lambda d: _is_stale(old))


def write_note(
    driver: WebDriver, server: LiveServer, title: str, body: str = "", tags: str = ""
) -> int:
    """Create a note through the form; return its id (the browser is on its page)."""
    driver.get(f"{server.url}/notes/new")
    fill(driver, "title", title)
    fill(driver, "body", body)
    fill(driver, "tags", tags)
    submit(driver)
    waiting(driver).until(lambda d: "/notes/" in d.current_url)
    return int(driver.current_url.split("/notes/", 1)[1].split("?", 1)[0])


def note_titles(driver: WebDriver) -> list[str]:
    """The titles in the notes list, top to bottom."""
    return [link.text for link in driver.find_elements(By.CSS_SELECTOR, "#results .note .title")]


def screenshot(driver: WebDriver, folder: Path, name: str) -> Path:
    """Save a picture of the browser's viewport as ``<name>.png`` and return its path."""
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
