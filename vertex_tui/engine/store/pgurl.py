"""PostgreSQL connection URLs: validation, display with the password masked, another
database on the same server. No driver import: settings use it to check a URL."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit, urlunsplit

SCHEMES = ("postgresql", "postgres")
MASK = "********"


def check_url(raw: str) -> str:
    """`raw` stripped if it is a usable libpq URL (postgresql://[user[:password]@]host[:port]
    /dbname[?params]); ValueError saying what is expected otherwise."""
    expected = "a PostgreSQL URL such as postgresql://user@host:5432/dbname"
    value = raw.strip()
    try:
        parts = urlsplit(value)
        port = parts.port  # ValueError when not a number or out of range
    except ValueError:
        raise ValueError(expected) from None
    if parts.scheme not in SCHEMES or (not parts.netloc and "host=" not in parts.query):
        raise ValueError(expected)
    if port is not None and not 0 < port < 65536:
        raise ValueError(expected)
    if not unquote(parts.path.lstrip("/")):
        raise ValueError(expected + " (the database name is missing)")
    if any(c.isspace() for c in value):
        raise ValueError(expected + " (no spaces)")
    return value


def display_url(url: str) -> str:
    """`url` with its password (if any) masked: what logs, errors and `config` show."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return mask_url(url)
    except ValueError:
        return mask_url(url)
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return mask_url(urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{hostinfo}")))


_USERINFO_PASSWORD = re.compile(r"(://[^:/@?#]*:)[^@/?#]*@")
_QUERY_PASSWORD = re.compile(r"(?i)(password=)[^&]*")


def mask_url(raw: str) -> str:
    """`raw` (any text, maybe no valid URL) with whatever looks like a password masked: what
    an error about a bad value may show."""
    return _QUERY_PASSWORD.sub(rf"\1{MASK}", _USERINFO_PASSWORD.sub(rf"\1{MASK}@", raw))


def database_name(url: str) -> str:
    return unquote(urlsplit(url).path.lstrip("/"))


def with_database(url: str, name: str) -> str:
    """The URL of database `name` on the server (and as the user) of `url`."""
    return urlunsplit(urlsplit(url)._replace(path="/" + quote(name)))
