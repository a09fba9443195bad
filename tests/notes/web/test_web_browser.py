"""The pages in a real browser: Debian's Chromium, headless, driven through chromedriver.

Each test is what a person does: sign up, write, search, edit, toggle, delete, log out; and
what must never happen: seeing another user's notes, a forged form doing something, a note
running script. The same tests save the screenshots of the docs (see conftest).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.select import Select

from .browsing import (
    PASSWORD,
    fill,
    heading,
    log_in,
    log_out,
    note_titles,
    screenshot,
    sign_up,
    submit,
    wait_for,
    wait_for_path,
    waiting,
    write_note,
)
from .conftest import PHONE, LiveServer

pytestmark = pytest.mark.timeout(90)

NewEmail = Callable[[str], str]


def _mark_page(driver: WebDriver) -> None:
    """Leave a marker in the page's window: it survives only if the page does not reload."""
    driver.execute_script("window.__samePage = true;")


def _same_page(driver: WebDriver) -> bool:
    return bool(driver.execute_script("return window.__samePage === true;"))


def test_a_user_signs_up_writes_finds_edits_toggles_deletes_a_note_and_logs_out(
    browser: WebDriver, live_server: LiveServer, new_email: NewEmail, screenshots: Path
) -> None:
    """The whole round of a note through the pages, with the script of the pages running."""
    email = new_email("ada")
    browser.get(f"{live_server.url}/signup")
    screenshot(browser, screenshots, "signup")
    sign_up(browser, live_server, email)
    assert "Welcome" in wait_for(browser, ".notice").text
    assert email in browser.find_element(By.CSS_SELECTOR, ".who").text

    log_out(browser)
    assert heading(browser) == "Log in"
    fill(browser, "email", email)
    fill(browser, "password", PASSWORD)
    screenshot(browser, screenshots, "login")
    submit(browser)
    wait_for_path(browser, live_server, "/")

    browser.find_element(By.LINK_TEXT, "New note").click()
    wait_for_path(browser, live_server, "/notes/new")
    fill(browser, "body", "From the **corner shop**")
    submit(browser)  # without a title: the form comes back with the message by the field
    assert browser.find_element(By.ID, "title-error").text == "Give the note a title, on one line."
    assert browser.find_element(By.ID, "body").get_attribute("value") == "From the **corner shop**"
    screenshot(browser, screenshots, "note-form-errors")
    fill(browser, "title", "Buy oat milk")
    fill(browser, "body", "From the **corner shop**:\n\n- oat milk\n- bread")
    fill(browser, "tags", "shopping, home")
    screenshot(browser, screenshots, "note-form")
    submit(browser)
    assert heading(browser) == "Buy oat milk"
    assert browser.find_element(By.CSS_SELECTOR, ".body strong").text == "corner shop"
    tags = [tag.text for tag in browser.find_elements(By.CSS_SELECTOR, ".meta .tag")]
    assert tags == ["shopping", "home"]
    screenshot(browser, screenshots, "note")

    write_note(browser, live_server, "Call the plumber", "About the *kitchen* tap.", "home")
    write_note(browser, live_server, "Read chapter 3", "", "books")
    browser.get(f"{live_server.url}/")
    assert note_titles(browser) == ["Read chapter 3", "Call the plumber", "Buy oat milk"]
    screenshot(browser, screenshots, "list")

    # Search as you type: the list follows the search box without a page load.
    _mark_page(browser)
    browser.find_element(By.ID, "q").send_keys("oat")
    waiting(browser).until(lambda d: note_titles(d) == ["Buy oat milk"])
    assert _same_page(browser)
    assert browser.current_url.endswith("?q=oat")

    # The tag filter, by clicking a tag.
    browser.get(f"{live_server.url}/")
    browser.find_element(By.CSS_SELECTOR, "#results .tag[href='/?tag=home']").click()
    waiting(browser).until(lambda d: len(note_titles(d)) == 2)
    assert note_titles(browser) == ["Call the plumber", "Buy oat milk"]

    # Edit.
    browser.find_element(By.LINK_TEXT, "Buy oat milk").click()
    browser.find_element(By.LINK_TEXT, "Edit").click()
    fill(browser, "title", "Buy oat milk and eggs")
    submit(browser)
    assert heading(browser) == "Buy oat milk and eggs"
    assert "Note saved." in browser.find_element(By.CSS_SELECTOR, ".notice").text

    # One click toggles "completed" in place.
    browser.get(f"{live_server.url}/?q=eggs")
    _mark_page(browser)
    check = browser.find_element(By.CSS_SELECTOR, "#results .note .check")
    assert check.get_attribute("aria-pressed") == "false"
    check.click()
    waiting(browser).until(
        lambda d: (
            d.find_element(By.CSS_SELECTOR, "#results .note").get_attribute("class") == "note done"
        )
    )
    assert _same_page(browser)
    browser.get(f"{live_server.url}/?status=done")
    assert note_titles(browser) == ["Buy oat milk and eggs"]
    browser.get(f"{live_server.url}/?status=open")
    assert note_titles(browser) == ["Read chapter 3", "Call the plumber"]

    # Delete, after confirming.
    browser.get(f"{live_server.url}/?q=eggs")
    browser.find_element(By.LINK_TEXT, "Buy oat milk and eggs").click()
    browser.find_element(By.LINK_TEXT, "Delete…").click()
    assert heading(browser) == "Delete this note?"
    screenshot(browser, screenshots, "delete")
    submit(browser)
    wait_for_path(browser, live_server, "/")
    assert "Note deleted." in browser.find_element(By.CSS_SELECTOR, ".notice").text
    assert note_titles(browser) == ["Read chapter 3", "Call the plumber"]

    log_out(browser)
    assert "You are logged out." in wait_for(browser, ".notice").text
    browser.get(f"{live_server.url}/")
    assert heading(browser) == "Log in"


def test_a_second_user_never_sees_the_notes_of_the_first(
    browser: WebDriver, live_server: LiveServer, new_email: NewEmail
) -> None:
    """Lists, searches, note pages and their forms of one user are closed to another."""
    first, second = new_email("first"), new_email("second")
    sign_up(browser, live_server, first)
    note_id = write_note(browser, live_server, "Diary of the first", "secret words", "private")
    log_out(browser)

    sign_up(browser, live_server, second)
    assert note_titles(browser) == []
    browser.get(f"{live_server.url}/?q=secret")
    assert note_titles(browser) == []
    browser.get(f"{live_server.url}/?tag=private")
    assert note_titles(browser) == []
    for path in (f"/notes/{note_id}", f"/notes/{note_id}/edit", f"/notes/{note_id}/delete"):
        browser.get(f"{live_server.url}{path}")
        assert heading(browser) == "Not found"
        assert "secret" not in browser.page_source
        assert "Diary" not in browser.page_source
    log_out(browser)

    log_in(browser, live_server, first)
    assert note_titles(browser) == ["Diary of the first"]


def test_a_form_posted_without_its_csrf_token_is_refused_and_changes_nothing(
    browser: WebDriver, live_server: LiveServer, new_email: NewEmail
) -> None:
    """A form whose token was removed, or replaced, gets the 403 page and saves nothing."""
    sign_up(browser, live_server, new_email("csrf"))
    for token in (None, "forged-token"):
        browser.get(f"{live_server.url}/notes/new")
        fill(browser, "title", "Should never be saved")
        if token is None:
            browser.execute_script("document.querySelector('main [name=csrf_token]').remove();")
        else:
            browser.execute_script(
                "document.querySelector('main [name=csrf_token]').value = arguments[0];", token
            )
        submit(browser)
        assert heading(browser) == "This form has expired"
    browser.get(f"{live_server.url}/")
    assert note_titles(browser) == []


def test_a_note_with_script_in_it_shows_the_text_and_runs_nothing(
    browser: WebDriver, live_server: LiveServer, new_email: NewEmail, screenshots: Path
) -> None:
    """Raw HTML in a note is text; event handlers and javascript: links never run."""
    sign_up(browser, live_server, new_email("mallory"))
    body = (
        "<script>window.pwned = 'script';</script>\n\n"
        "<img src=x onerror=\"window.pwned = 'img'\">\n\n"
        "[click me](javascript:window.pwned='link')\n\n"
        "[and me](JaVaScRiPt:window.pwned='link2') and **bold** text"
    )
    write_note(browser, live_server, "<script>window.pwned = 'title'</script>", body, "<b>tag</b>")
    assert heading(browser) == "<script>window.pwned = 'title'</script>"
    text = browser.find_element(By.CSS_SELECTOR, ".body").text
    assert "<script>window.pwned = 'script';</script>" in text
    assert "<img src=x onerror=" in text
    assert browser.find_element(By.CSS_SELECTOR, ".body strong").text == "bold"
    hrefs = [a.get_attribute("href") or "" for a in browser.find_elements(By.TAG_NAME, "a")]
    assert not [href for href in hrefs if "script:" in href.lower()]
    screenshot(browser, screenshots, "note-with-script")

    browser.get(f"{live_server.url}/")
    assert note_titles(browser) == ["<script>window.pwned = 'title'</script>"]
    assert browser.find_element(By.CSS_SELECTOR, "#results .tag").text == "<b>tag</b>"
    assert browser.execute_script("return typeof window.pwned;") == "undefined"


def test_an_edit_of_a_note_changed_meanwhile_shows_the_conflict_instead_of_overwriting(
    browser: WebDriver, live_server: LiveServer, new_email: NewEmail, screenshots: Path
) -> None:
    """Two tabs edit one note: the second save is shown the first, and keeps its own text."""
    sign_up(browser, live_server, new_email("twotabs"))
    note_id = write_note(browser, live_server, "Packing list", "- socks", "trip")
    first_tab = browser.current_window_handle
    browser.get(f"{live_server.url}/notes/{note_id}/edit")

    browser.switch_to.new_window("tab")
    browser.get(f"{live_server.url}/notes/{note_id}/edit")
    fill(browser, "body", "- socks\n- passport")
    submit(browser)
    assert heading(browser) == "Packing list"
    browser.close()
    browser.switch_to.window(first_tab)

    fill(browser, "body", "- socks\n- sunscreen")
    submit(browser)
    conflict = wait_for(browser, ".conflict")
    assert "changed meanwhile" in conflict.text
    assert "passport" in conflict.find_element(By.CSS_SELECTOR, ".saved").text
    assert browser.find_element(By.ID, "body").get_attribute("value") == "- socks\n- sunscreen"
    screenshot(browser, screenshots, "conflict")

    browser.switch_to.new_window("tab")
    browser.get(f"{live_server.url}/notes/{note_id}")
    assert "passport" in browser.find_element(By.CSS_SELECTOR, ".body").text
    browser.close()
    browser.switch_to.window(first_tab)

    submit(browser)  # saving again, knowingly, replaces the other version
    assert heading(browser) == "Packing list"
    body = browser.find_element(By.CSS_SELECTOR, ".body").text
    assert "sunscreen" in body
    assert "passport" not in body


def test_the_pages_work_with_javascript_switched_off(
    browser: WebDriver, live_server: LiveServer, new_email: NewEmail
) -> None:
    """Search, toggle and delete are plain forms: they work with no script at all."""
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    sign_up(browser, live_server, new_email("noscript"))
    write_note(browser, live_server, "Water the plants", "", "home")
    write_note(browser, live_server, "File the taxes", "", "admin")

    browser.get(f"{live_server.url}/")
    fill(browser, "q", "plants")
    submit(browser, "form[role=search]")
    assert note_titles(browser) == ["Water the plants"]

    submit(browser, "#results .note form")
    assert browser.current_url.endswith("/?q=plants")
    check = browser.find_element(By.CSS_SELECTOR, "#results .note .check")
    assert check.get_attribute("aria-pressed") == "true"

    browser.get(f"{live_server.url}/")
    Select(browser.find_element(By.ID, "status")).select_by_value("open")
    submit(browser, "form[role=search]")
    assert note_titles(browser) == ["File the taxes"]


def test_a_phone_sized_screen_and_the_keyboard_alone_are_enough(
    browser: WebDriver, live_server: LiveServer, new_email: NewEmail, screenshots: Path
) -> None:
    """At 390 px nothing scrolls sideways; signing up, writing and toggling need no mouse."""
    browser.set_window_size(*PHONE)
    browser.get(f"{live_server.url}/signup")
    # The email field has the focus; Tab moves to the password, Enter sends the form.
    active = browser.switch_to.active_element
    assert active.get_attribute("id") == "email"
    active.send_keys(new_email("keys"))
    active.send_keys(Keys.TAB)
    browser.switch_to.active_element.send_keys(PASSWORD, Keys.ENTER)
    wait_for_path(browser, live_server, "/")

    # The first Tab reaches the skip link; "New note" is reachable from the header.
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert browser.switch_to.active_element.text == "Skip to content"
    for _ in range(5):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        if browser.switch_to.active_element.text == "New note":
            break
    assert browser.switch_to.active_element.text == "New note"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    wait_for_path(browser, live_server, "/notes/new")
    assert browser.switch_to.active_element.get_attribute("id") == "title"
    browser.switch_to.active_element.send_keys("Dentist on Friday", Keys.ENTER)
    waiting(browser).until(lambda d: heading(d) == "Dentist on Friday")
    write_note(browser, live_server, "Renew the bus pass", "Before *Monday*.", "errands, city")
    write_note(browser, live_server, "A rather long title that has to wrap on a small screen")

    browser.get(f"{live_server.url}/")
    width = browser.execute_script("return document.documentElement.scrollWidth;")
    assert width <= PHONE[0]
    screenshot(browser, screenshots, "list-phone")

    check = browser.find_element(By.CSS_SELECTOR, "#results .note .check")
    browser.execute_script("arguments[0].focus();", check)
    browser.switch_to.active_element.send_keys(Keys.SPACE)
    waiting(browser).until(
        lambda d: (
            d.find_element(By.CSS_SELECTOR, "#results .note .check").get_attribute("aria-pressed")
            == "true"
        )
    )
