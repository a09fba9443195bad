"""Note bodies as Markdown, rendered safely: raw HTML is text and no link can run script.

Two layers. markdown-it-py runs with HTML switched off, so ``<script>`` in a note is escaped
and shown as text, and its link check refuses ``javascript:``, ``vbscript:``, ``file:`` and
``data:`` targets. nh3 then cleans the output against a small allow-list of tags,
attributes and URL schemes, so that a gap in the first layer is not a hole. The pages also
send a Content-Security-Policy that allows no inline script at all.
"""

from __future__ import annotations

from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

__all__ = ["render_markdown"]

_TAGS = {
    "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "img", "li", "ol", "p", "pre", "s", "strong", "table", "tbody", "td", "th", "thead", "tr",
    "ul",
}  # fmt: skip
_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    "td": {"style"},
    "th": {"style"},
}
_SCHEMES = {"http", "https", "mailto"}


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # "js-default": CommonMark plus tables and strikethrough, with html off.
    return MarkdownIt("js-default", {"html": False, "linkify": False, "typographer": False})


def render_markdown(text: str) -> Markup:
    """Render a note body to HTML that is safe to put in a page as it is."""
    html = _parser().render(text)
    cleaned = nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes=_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        filter_style_properties={"text-align"},
    )
    # Safe to mark: nh3 has just cleaned it.
    return Markup(cleaned)
