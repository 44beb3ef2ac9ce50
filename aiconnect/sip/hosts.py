# -*- test-case-name: tests.sip.test_uri -*-
"""
Host syntax outside SIP URIs: socket and Via forms of an address (IPv6
brackets), IP literal and RFC 1123 host name checks, and
L{split_host_port} for the configuration's C{host:port} targets.

Re-exported by L{aiconnect.sip.uri}, where these lived first.

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

import ipaddress
import re


def host_for_socket(host: str) -> str:
    """
    The host as a socket address: IPv6 references lose their brackets.
    """
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return host


def format_host(address: str) -> str:
    """
    An IP address or hostname as a URI host: IPv6 addresses gain brackets.
    """
    if ":" in address and not address.startswith("["):
        return "[" + address + "]"
    return address


def is_ip_address(host: str) -> bool:
    """
    Whether a URI host is a literal IPv4 or IPv6 address.
    """
    return is_ip_literal(host_for_socket(host))


def is_ip_literal(text: str) -> bool:
    """
    @return: Whether C{text} is an IPv4 or IPv6 address literal (IPv6
        without brackets).
    """
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_ipv6_literal(text: str) -> bool:
    """
    @return: Whether C{text} is an IPv6 address literal (no brackets).
    """
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


# RFC 1123 host name label; a whole name is at most 253 characters.
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def is_hostname(text: str) -> bool:
    """
    @return: Whether C{text} is an RFC 1123 host name (trailing dot allowed).
    """
    name = text[:-1] if text.endswith(".") else text
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    if all(label.isdigit() for label in labels):
        # Looks like a (bad) IPv4 address, e.g. 256.1.1.1.
        return False
    return all(_LABEL.match(label) for label in labels)


def split_host_port(target: str) -> tuple[str, int | None]:
    """
    Split a configured target: C{host}, C{host:port}, C{[v6]}, C{[v6]:port}
    or a bare IPv6 literal (C{TrunkConfig.target}; stricter on host names
    than L{split_hostport}, which follows RFC 3261's C{hostport}).

    @param target: The text to split.
    @return: The host (IPv6 without brackets) and the port or L{None}.
    @raise ValueError: If the text is not of that form, the host is neither
        an IP literal nor a valid host name, or the port is not 1..65535.
    """
    port_text: str | None = None
    if target.startswith("["):
        end = target.find("]")
        if end < 0:
            raise ValueError("unbalanced '[' in IPv6 literal")
        host, rest = target[1:end], target[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError("expected ':port' after ']'")
            port_text = rest[1:]
        if not is_ipv6_literal(host):
            raise ValueError(f"{host!r} is not an IPv6 address")
    elif target.count(":") > 1:
        host = target
        if not is_ipv6_literal(host):
            raise ValueError(
                f"{host!r} is not an IPv6 address (write [addr]:port "
                "for an IPv6 address with a port)"
            )
    else:
        host, sep, port_text_ = target.partition(":")
        port_text = port_text_ if sep else None
        if not (is_ip_literal(host) or is_hostname(host)):
            raise ValueError(f"{host!r} is neither an IP address nor a host name")
    port: int | None = None
    if port_text is not None:
        if not port_text.isascii() or not port_text.isdigit():
            raise ValueError(f"port {port_text!r} is not a number")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port} is not in 1..65535")
    return host, port
