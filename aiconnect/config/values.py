# -*- test-case-name: tests.test_config -*-
"""
What a single value means, wherever it stands: a bind address, an
advertised address, a file path (resolved against the working directory),
a callback URL, a PEM public key file.  Each function takes the L{Table} and
the key, so that its L{ConfigError} names the dotted key.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from aiconnect.config.reader import Table
from aiconnect.errors import ConfigError
from aiconnect.sip.uri import is_hostname as _is_hostname
from aiconnect.sip.uri import is_ip_literal as _is_ip

#: What a PEM public key file contains (SubjectPublicKeyInfo or PKCS#1).
_PEM_PUBLIC_KEY_MARKERS = (
    b"-----BEGIN PUBLIC KEY-----",
    b"-----BEGIN RSA PUBLIC KEY-----",
)


def bind_address(table: Table, name: str, default: str) -> str:
    """
    @return: A bind address: an IP literal.
    """
    value = table.string(name, default)
    if not _is_ip(value):
        raise ConfigError(
            table.key(name),
            f"{value!r} is not an IP address (use 0.0.0.0 or :: for all interfaces)",
        )
    return value


def advertised_address(table: Table, name: str, default: str) -> str:
    """
    @return: An advertised address: an IP literal or a host name.
    """
    value = table.string(name, default)
    if not (_is_ip(value) or _is_hostname(value)):
        raise ConfigError(table.key(name), f"{value!r} is neither an IP address nor a host name")
    return value


def file_path(table: Table, name: str, default: str, must_exist: bool) -> str:
    """
    @return: An absolute path resolved against the working directory, or
        C{""} when the value is empty.
    """
    value = table.string(name, default)
    if not value:
        return ""
    if "\x00" in value:
        raise ConfigError(table.key(name), "path contains a NUL character")
    resolved = os.path.abspath(value)
    if must_exist and not os.path.isfile(resolved):
        raise ConfigError(table.key(name), f"file {resolved} does not exist")
    return resolved


def callback_url(table: Table, name: str) -> str:
    """
    @return: An http(s) base URL without trailing slash, query, fragment or credentials.
    """
    value = table.string(name)
    key = table.key(name)
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as e:
        raise ConfigError(key, f"{value!r} is not a valid URL: {e}") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(key, f"{value!r} is not an http:// or https:// URL")
    host = parts.hostname or ""
    if not host or not (_is_ip(host) or _is_hostname(host)):
        raise ConfigError(key, f"{value!r} has no valid host")
    if port == 0:
        raise ConfigError(key, f"{value!r} has port 0")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            key,
            "credentials in the URL are not supported (requests are signed with signing_secret)",
        )
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ConfigError(
            key,
            f"{value!r} must not have a query or fragment ('/newCall' and '/events' are appended)",
        )
    if any(c.isspace() or ord(c) < 0x20 for c in value):
        raise ConfigError(key, f"{value!r} contains whitespace or control characters")
    return value.rstrip("/")


def jwt_public_key(table: Table, name: str) -> str:
    """
    @return: The absolute path of an existing PEM public key file, or C{""}.
    """
    path = file_path(table, name, "", must_exist=True)
    if path:
        try:
            with open(path, "rb") as f:
                pem = f.read()
        except OSError as e:
            raise ConfigError(table.key(name), f"cannot read {path}: {e.strerror}") from None
        if not any(marker in pem for marker in _PEM_PUBLIC_KEY_MARKERS):
            raise ConfigError(table.key(name), f"{path} is not a PEM public key (BEGIN PUBLIC KEY)")
    return path

