"""DatabaseURL: a parsed, immutable database URL."""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlsplit

from .exceptions import ConfigurationError

__all__ = ["DatabaseURL"]


class DatabaseURL:
    """A database URL such as ``postgresql+asyncpg://user:secret@host:5432/app?min_size=2``.

    The URL is kept exactly as given: ``str(url)`` returns the original text and two URLs are
    equal when their texts are. ``repr()`` hides the password. Instances are immutable and may
    be shared between tasks.
    """

    __slots__ = ("_components", "_url")

    def __init__(self, url: str | DatabaseURL) -> None:
        if isinstance(url, DatabaseURL):
            self._url: str = url._url
        elif isinstance(url, str):
            self._url = url
        else:
            raise ConfigurationError(
                f"a database URL must be a str or DatabaseURL, not {type(url).__name__}"
            )
        self._components: SplitResult | None = None

    @property
    def components(self) -> SplitResult:
        """The URL split into scheme, netloc, path, query and fragment."""
        if self._components is None:
            try:
                self._components = urlsplit(self._url)
            except ValueError as exc:
                raise ConfigurationError(f"malformed database URL: {exc}") from None
        return self._components

    @property
    def scheme(self) -> str:
        """The scheme, for example ``postgresql+asyncpg``."""
        return self.components.scheme

    @property
    def dialect(self) -> str:
        """The database part of the scheme, for example ``postgresql``."""
        return self.scheme.split("+", 1)[0]

    @property
    def driver(self) -> str:
        """The driver part of the scheme, or ``""`` when the scheme names none."""
        _, _, driver = self.scheme.partition("+")
        return driver

    @property
    def userinfo(self) -> bytes | None:
        """The raw ``user:password`` part of the URL, or ``None``."""
        netloc = self.components.netloc
        if "@" not in netloc:
            return None
        return netloc.rsplit("@", 1)[0].encode("utf-8")

    @property
    def username(self) -> str | None:
        """The user name, percent-decoded, or ``None``."""
        username = self.components.username
        return None if username is None else unquote(username)

    @property
    def password(self) -> str | None:
        """The password, percent-decoded, or ``None``."""
        password = self.components.password
        return None if password is None else unquote(password)

    @property
    def hostname(self) -> str | None:
        """The host name; falls back to the ``host`` or ``unix_sock`` query options."""
        hostname = self.components.hostname
        if hostname:
            return hostname
        options = self.options
        return options.get("host") or options.get("unix_sock") or None

    @property
    def port(self) -> int | None:
        """The port number, or ``None``.

        Raises:
            ConfigurationError: The port is not a number between 0 and 65535.
        """
        try:
            return self.components.port
        except ValueError:
            raise ConfigurationError(
                f"malformed database URL {self!r}: the port is not a number in 0-65535"
            ) from None

    @property
    def netloc(self) -> str | None:
        """The network location (``user:password@host:port``), or ``None`` when empty."""
        return self.components.netloc or None

    @property
    def database(self) -> str:
        """The database name, or for SQLite the file path (``:memory:`` for memory)."""
        path = self.components.path
        if path.startswith("/"):
            path = path[1:]
        return unquote(path)

    @property
    def options(self) -> dict[str, str]:
        """The query-string options as a dict."""
        return dict(parse_qsl(self.components.query))

    @property
    def obscure_password(self) -> str:
        """The URL with its password replaced by ``********``."""
        if self.password:
            return self.replace(password="********")._url
        return self._url

    def replace(self, **kwargs: Any) -> DatabaseURL:
        """Return a copy with some parts replaced.

        Accepts ``scheme``, ``dialect``, ``driver``, ``username``, ``password``, ``hostname``,
        ``port``, ``database``, ``netloc``, ``path`` and ``query``.
        """
        components = self.components
        if {"username", "password", "hostname", "port"} & kwargs.keys():
            hostname = kwargs.pop("hostname", components.hostname) or ""
            port = kwargs.pop("port", self.port)
            username = kwargs.pop("username", self.username)
            password = kwargs.pop("password", self.password)
            netloc = hostname
            if port is not None:
                netloc += f":{port}"
            if username is not None:
                userpass = quote(username, safe="")
                if password is not None:
                    userpass += ":" + (
                        password if password == "********" else quote(password, safe="")
                    )
                netloc = f"{userpass}@{netloc}"
            kwargs["netloc"] = netloc
        if "database" in kwargs:
            kwargs["path"] = "/" + kwargs.pop("database")
        if "dialect" in kwargs or "driver" in kwargs:
            dialect = kwargs.pop("dialect", self.dialect)
            driver = kwargs.pop("driver", self.driver)
            kwargs["scheme"] = f"{dialect}+{driver}" if driver else dialect
        unknown = kwargs.keys() - {"scheme", "netloc", "path", "query", "fragment"}
        if unknown:
            raise ConfigurationError(
                f"DatabaseURL.replace() got unknown parts: {', '.join(sorted(unknown))}"
            )
        new = components._replace(**kwargs)
        # urlunsplit drops an empty netloc ("sqlite:/db"); keep the "//" so paths stay paths.
        netloc = new.netloc
        url = f"{new.scheme}://{netloc}{new.path}"
        if new.query:
            url += f"?{new.query}"
        if new.fragment:
            url += f"#{new.fragment}"
        return DatabaseURL(url)

    def __str__(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.obscure_password!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DatabaseURL | str):
            return str(self) == str(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._url)
