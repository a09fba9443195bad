"""The words of a search query, and the backend-specific query strings built from them.

What a user types is never handed to a search syntax as it is: it is cut into words (runs of
letters and digits, as SQLite's ``unicode61`` tokenizer cuts them), and every word becomes a
quoted literal. Operators (``AND``, ``NEAR``, ``-``, ``*``, parentheses), quotes, ``%`` and
``_`` are separators or plain words, never syntax. A note matches when it contains every word
of the query, in its title or body, in any order and any case.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

__all__ = [
    "fold",
    "fts5_query",
    "mysql_boolean_query",
    "mysql_indexed",
    "tsquery_words",
    "unique",
    "words",
]

#: MariaDB/InnoDB ignore shorter words in a full-text index (innodb_ft_min_token_size).
MYSQL_MIN_WORD = 3

# As InnoDB lists them (INFORMATION_SCHEMA.INNODB_FT_DEFAULT_STOPWORD).
_INNODB_STOP_WORDS = (
    "a about an are as at be by com de en for from how i in is it la of on or that the "
    "this to und was what when where who will with www"
)

#: InnoDB's default stop words: the index leaves them out, and a required one matches nothing.
MYSQL_STOP_WORDS = frozenset(_INNODB_STOP_WORDS.split())

#: Words longer than this are cut: no index keeps them whole, and no query needs them.
MAX_WORD = 64

#: At most this many words of a query are used; the rest would only narrow it further.
MAX_WORDS = 32


def _is_word_char(char: str, underscore: bool) -> bool:
    category = unicodedata.category(char)
    return category[0] in "LN" or category == "Co" or (underscore and char == "_")


def _strip_latin_diacritics(char: str) -> str:
    if char.isascii() or not unicodedata.name(char, "").startswith("LATIN"):
        return char
    decomposed = unicodedata.normalize("NFD", char)
    return "".join(c for c in decomposed if not unicodedata.combining(c)) or char


def fold(word: str, *, diacritics: bool = True) -> str:
    """Lower-case a word and, if asked, strip the diacritics of its Latin letters."""
    word = word.lower()
    if diacritics:
        word = "".join(_strip_latin_diacritics(char) for char in word)
    return word


def words(text: str, *, diacritics: bool = True, underscore: bool = False) -> list[str]:
    """Cut text into folded words: maximal runs of letters and digits, in order.

    Args:
        text: Anything a user typed.
        diacritics: Strip the diacritics of Latin letters (``café`` -> ``cafe``).
        underscore: Count ``_`` as a letter, as InnoDB's full-text parser does.
    """
    found: list[str] = []
    current: list[str] = []
    for char in text:
        if _is_word_char(char, underscore):
            current.append(char)
        elif current:
            found.append("".join(current))
            current = []
    if current:
        found.append("".join(current))
    folded = (fold(word, diacritics=diacritics)[:MAX_WORD] for word in found)
    return [word for word in folded if word]


def unique(items: Iterable[str]) -> list[str]:
    """Drop repeated items, keeping the first of each, in order."""
    return list(dict.fromkeys(items))


def fts5_query(text: str) -> str | None:
    """Return an FTS5 MATCH expression requiring every word of text, or None if it has none.

    Each word is an FTS5 string literal (``"..."``, a double quote inside doubled), so the
    expression can never be a syntax error whatever the input.
    """
    terms = unique(words(text))[:MAX_WORDS]
    if not terms:
        return None
    return " ".join('"' + term.replace('"', '""') + '"' for term in terms)


def tsquery_words(text: str) -> str | None:
    """Return the words of text for PostgreSQL's ``plainto_tsquery``, or None if none.

    ``plainto_tsquery`` ignores every operator itself; giving it only words also keeps its
    parser's cuts the same as ours.
    """
    terms = unique(words(text, diacritics=False))[:MAX_WORDS]
    return " ".join(terms) if terms else None


def mysql_indexed(word: str) -> bool:
    """True when InnoDB's full-text index keeps this (folded) word with default settings."""
    return len(word) >= MYSQL_MIN_WORD and word not in MYSQL_STOP_WORDS


def mysql_boolean_query(text: str) -> str | None:
    """Return a MariaDB/MySQL BOOLEAN MODE query requiring every word, or None if none.

    Words are cut as InnoDB cuts them (``_`` belongs to a word); words shorter than the
    index keeps, and stop words, are left out, since a required one would match nothing.
    Inside double quotes only ``"`` is special, and a word never holds one.
    """
    terms = [term for term in unique(words(text, underscore=True)) if mysql_indexed(term)]
    if not terms:
        return None
    return " ".join(f'+"{term}"' for term in terms[:MAX_WORDS])
