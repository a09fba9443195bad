"""Parsing of backend options given as URL query strings or keyword arguments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..exceptions import ConfigurationError

__all__ = ["OptionReader"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class OptionReader:
    """Reads options from the URL query and keywords (keywords win), rejecting unknown ones."""

    def __init__(self, scheme: str, url_options: Mapping[str, str], kwargs: Mapping[str, Any]):
        self._scheme = scheme
        self._values: dict[str, Any] = {**url_options, **kwargs}
        self._used: set[str] = set()

    def has(self, name: str) -> bool:
        """Whether the option was given."""
        return name in self._values

    def raw(self, name: str, default: Any = None) -> Any:
        """Take an option as given."""
        self._used.add(name)
        return self._values.get(name, default)

    def int(self, name: str, default: int, minimum: int = 0) -> int:
        """Take an integer option."""
        value = self.raw(name, default)
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigurationError(f"option {name}={value!r} must be an integer") from None
        if number < minimum:
            raise ConfigurationError(f"option {name}={value!r} must be at least {minimum}")
        return number

    def float(self, name: str, default: float | None) -> float | None:
        """Take a number of seconds; ``none``, ``0`` or a negative number means no limit."""
        value = self.raw(name, default)
        if value is None or (isinstance(value, str) and value.lower() in {"none", ""}):
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigurationError(f"option {name}={value!r} must be a number") from None
        return number if number > 0 else None

    def bool(self, name: str, default: bool) -> bool:
        """Take a boolean option (``true``/``false``, ``1``/``0``, ``yes``/``no``)."""
        value = self.raw(name, default)
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigurationError(f"option {name}={value!r} must be true or false")

    def choice(self, name: str, default: str, allowed: set[str]) -> str:
        """Take an option that must be one of ``allowed``."""
        value = str(self.raw(name, default)).lower()
        if value not in allowed:
            raise ConfigurationError(
                f"option {name}={value!r} must be one of {', '.join(sorted(allowed))}"
            )
        return value

    def remaining(self) -> dict[str, Any]:
        """The options nobody took."""
        return {k: v for k, v in self._values.items() if k not in self._used}

    def reject_unknown(self, known: set[str] | None = None) -> None:
        """Raise for options nobody took."""
        unknown = set(self.remaining()) - (known or set())
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) for {self._scheme}://: {', '.join(sorted(unknown))}"
            )
