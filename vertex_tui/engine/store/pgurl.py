"""PostgreSQL connection URLs: validation, display with the password masked, another
database on the same server. No driver import: settings use it to check a URL."""

from __future__ import annotations

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
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{hostinfo}"))


def database_name(url: str) -> str:
    return unquote(urlsplit(url).path.lstrip("/"))


def with_database(url: str, name: str) -> str:
    """The URL of database `name` on the server (and as the user) of `url`."""
    return urlunsplit(urlsplit(url)._replace(path="/" + quote(name)))
