"""Building error classes that are both ours and the driver's."""

from __future__ import annotations

from typing import Any

from .. import exceptions

__all__ = ["combined_error"]

_CLASSES: dict[tuple[type[BaseException], type[BaseException]], type[BaseException]] = {}


def combined_error(
    ours: type[exceptions.Error], driver: type[BaseException], prefix: str
) -> type[BaseException]:
    """Return a class subclassing both ``ours`` and the driver's exception class.

    Raising an instance lets callers catch either ``aiodatabases.IntegrityError`` or, say,
    ``sqlite3.IntegrityError``: old code keeps working, new code can be driver-neutral.
    """
    key = (ours, driver)
    cls = _CLASSES.get(key)
    if cls is None:
        if issubclass(driver, ours):
            cls = driver
        else:
            name = f"{prefix}{ours.__name__}"
            namespace: dict[str, Any] = {"__module__": "aiodatabases.exceptions"}
            try:
                cls = type(name, (ours, driver), namespace)
            except TypeError:
                # The driver's class has a C layout that cannot be mixed in: keep ours only.
                cls = ours
        _CLASSES[key] = cls
    return cls
