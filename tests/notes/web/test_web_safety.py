"""Safe Markdown, signed cookies, CSRF tokens and redirects of the pages, without a server."""

from __future__ import annotations

import re
import time

import pytest

from notes.web.markdown import render_markdown
from notes.web.security import Signer, safe_next

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def test_raw_html_in_a_note_is_shown_as_text() -> None:
    """<script>, event handlers and iframes come out escaped, as the characters typed."""
    html = str(
        render_markdown(
            "<script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n<iframe src=//x>"
        )
    )
    assert "<script" not in html
    assert "<img" not in html
    assert "<iframe" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html


@pytest.mark.parametrize(
    "target",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "&#106;avascript:alert(1)",
        "javascript&colon;alert(1)",
        "vbscript:msgbox(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "file:///etc/passwd",
    ],
)
def test_a_link_that_could_run_script_is_not_a_link(target: str) -> None:
    """Markdown links and images to script-running schemes render without an href or src."""
    for text in (f"[click]({target})", f"![pic]({target})", f"<{target}>"):
        html = str(render_markdown(text))
        for url in re.findall(r'(?:href|src)="([^"]*)"', html):
            assert url.startswith(("http:", "https:", "mailto:", "/")), (text, html)


def test_markdown_formatting_and_ordinary_links_survive() -> None:
    """Emphasis, lists, code, tables and http(s) links render as HTML; links get a safe rel."""
    html = str(
        render_markdown(
            "**bold** *it* `code`\n\n- one\n- two\n\n| a | b |\n|---|--:|\n| 1 | 2 |\n\n"
            "[site](https://example.org/x?y=1) [mail](mailto:ada@example.org) [here](/notes/1)"
        )
    )
    assert "<strong>bold</strong>" in html
    assert "<em>it</em>" in html
    assert "<code>code</code>" in html
    assert "<li>one</li>" in html
    assert '<td style="text-align:right">2</td>' in html
    assert 'href="https://example.org/x?y=1"' in html
    assert 'href="mailto:ada@example.org"' in html
    assert 'href="/notes/1"' in html
    assert 'rel="noopener noreferrer nofollow"' in html


def test_a_session_cookie_says_who_and_which_session_until_it_expires() -> None:
    """A cookie made by the signer is read back; the same secret reads it in a new signer."""
    cookie = Signer(SECRET).session_cookie(user_id=7, session_id=42, lifetime=60)
    session = Signer(SECRET).read_session(cookie)
    assert session is not None
    assert (session.user_id, session.session_id) == (7, 42)
    assert time.time() < session.expires_at <= time.time() + 61


def test_a_forged_tampered_or_expired_session_cookie_is_refused() -> None:
    """Another secret, a changed byte, an expired or garbled cookie all read as no session."""
    signer = Signer(SECRET)
    cookie = signer.session_cookie(user_id=7, session_id=42, lifetime=60)
    payload, signature = cookie.split(".")
    other_payload = Signer(SECRET).session_cookie(8, 42, 60).split(".")[0]
    assert Signer(SECRET + "x").read_session(cookie) is None
    assert signer.read_session(f"{other_payload}.{signature}") is None
    assert signer.read_session(f"{payload}.{signature[:-2]}AA") is None
    assert signer.read_session(signer.session_cookie(7, 42, lifetime=-1)) is None
    for junk in ("", ".", "abc", "a.b.c", "%%%.%%%", "x" * 600, None):
        assert signer.read_session(junk) is None


def test_a_csrf_token_fits_only_the_browser_it_was_made_for() -> None:
    """The token of one session is refused for another, and no token is never accepted."""
    signer = Signer(SECRET)
    token = signer.csrf_token("session:1")
    assert signer.check_csrf("session:1", token)
    assert not signer.check_csrf("session:2", token)
    assert not signer.check_csrf("anonymous:abc", token)
    assert not Signer(SECRET + "x").check_csrf("session:1", token)
    assert not signer.check_csrf("session:1", "")
    assert not signer.check_csrf("session:1", None)
    assert not signer.check_csrf(None, token)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/notes/3?x=1", "/notes/3?x=1"),
        ("/", "/"),
        (None, "/"),
        ("", "/"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/\r\nSet-Cookie: x=1", "/"),
    ],
)
def test_the_page_after_login_or_toggle_is_always_on_this_site(
    target: str | None, expected: str
) -> None:
    """A next= parameter can name a page of the service and nothing else (no open redirect)."""
    assert safe_next(target) == expected
