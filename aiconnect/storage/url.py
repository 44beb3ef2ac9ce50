# -*- test-case-name: tests.storage.test_config -*-
"""
The C{[database] url}: C{""} (SQLite at C{[events] database}, the embedded
default) or a libpq URI, C{postgresql://user:password@host:port/dbname}.

L{check_url} validates a URI without ever putting the password (or any
query value, which may hold one) into its messages; L{redact_url} is the
form logs may show.  Nothing here imports the driver: the configuration
reads this module.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

__all__ = ["SCHEMES", "check_url", "is_postgresql", "redact_url"]

#: The URI schemes libpq accepts.
SCHEMES = ("postgresql", "postgres")

#: What may stand between the slashes of a host list: host, [IPv6], :port.
_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]*)(?::(\d*))?$")

#: A percent escape, and a percent that starts none.
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def is_postgresql(url: str) -> bool:
    """
    @return: Whether C{url} names a PostgreSQL database (else: SQLite).
    """
    return bool(url)


def check_url(url: str) -> str:
    """
    Validate a C{[database] url}.

    @param url: The value.
    @return: C{url} unchanged.
    @raise ValueError: Saying what is wrong, never echoing the password or
        a query value.
    """
    if not url:
        return url
    if any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in url):
        raise ValueError("contains whitespace or control characters")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ValueError("must be empty (SQLite) or a postgresql:// URI")
    if _BAD_PERCENT.search(rest):
        raise ValueError("has a '%' that starts no percent escape (%XX)")
    parts = urlsplit("postgresql://" + rest)
    if parts.fragment:
        raise ValueError("must not have a fragment")
    hosts = parts.netloc.rpartition("@")[2]
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    # A malformed URI may hold pieces of the password anywhere: the
    # messages name places, never text.
    for i, host in enumerate(hosts.split(",")):
        match = _HOST.match(host)
        if match is None:
            raise ValueError(f"host {i + 1} is not host[:port] (a password with / ? # @ : must be percent-encoded)")
        port = match.group(1)
        if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"the port of host {i + 1} is not in 1..65535")
    if not hosts and "host" not in query:
        raise ValueError("names no host (write host[:port], or ?host=/socket/directory)")
    dbname = parts.path.lstrip("/")
    if "/" in dbname:
        raise ValueError("the database name must not contain '/'")
    return url


def redact_url(url: str) -> str:
    """
    @return: C{url} as logs may show it: the password and the query values
        replaced by C{***}.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***" if url else ""
    before, question, query = rest.partition("?")
    userinfo, at, after = before.rpartition("@")
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    if question:
        query = "&".join(pair.split("=", 1)[0] + "=***" for pair in query.split("&") if pair)
    return f"{scheme}{sep}{userinfo}{at}{after}{question}{query}"
