"""PostgreSQL connection URLs: validation, display with the password masked, another
database on the same server. No driver import: settings use it to check a URL."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit, urlunsplit

SCHEMES = ("postgresql", "postgres")
MASK = "********"


def _valid_host(item: str) -> bool:
    """One `host[:port]` of a URL's host list (`[v6addr]:port` too; an empty host: libpq's
    default socket)."""
    if item.startswith("["):
        host, sep, rest = item[1:].partition("]")
        if not sep or not host or (rest and not rest.startswith(":")):
            return False
        port = rest[1:]
    else:
        host, _, port = item.partition(":")
        if any(c in host for c in "[]/ "):
            return False
    return not port or (port.isdigit() and 0 < int(port) < 65536)


def check_url(raw: str) -> str:
    """`raw` stripped if it is a usable libpq URL: postgresql://[user[:password]@][host][:port]
    [,host2[:port2]...]/dbname[?params] (no host: the local socket; several: libpq tries them
    in turn); ValueError saying what is expected otherwise."""
    expected = "a PostgreSQL URL such as postgresql://user@host:5432/dbname"
    value = raw.strip()
    if any(c.isspace() for c in value):
        raise ValueError(expected + " (no spaces)")
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ValueError(expected) from None
    if parts.scheme not in SCHEMES or not value.startswith(f"{parts.scheme}://"):
        raise ValueError(expected)
    hosts = parts.netloc.rpartition("@")[2]
    if not all(_valid_host(item) for item in hosts.split(",")):
        raise ValueError(expected)
    if not unquote(parts.path.lstrip("/")):
        raise ValueError(expected + " (the database name is missing)")
    return value


_USERINFO_PASSWORD = re.compile(r"(://[^:/@?#]*:)[^@/?#]*@")
_QUERY_PASSWORD = re.compile(r"(?i)(password=)[^&]*")


def mask_url(raw: str) -> str:
    """`raw` (any text, maybe no valid URL) with whatever looks like a password masked: what
    an error about a bad value may show."""
    return _QUERY_PASSWORD.sub(rf"\1{MASK}", _USERINFO_PASSWORD.sub(rf"\1{MASK}@", raw))


def display_url(url: str) -> str:
    """`url` with its password (in the user part or a `password=` parameter) masked: what
    logs, errors and `config` show."""
    return mask_url(url)


def database_name(url: str) -> str:
    return unquote(urlsplit(url).path.lstrip("/"))


def with_database(url: str, name: str) -> str:
    """The URL of database `name` on the server (and as the user) of `url`."""
    return urlunsplit(urlsplit(url)._replace(path="/" + quote(name)))
