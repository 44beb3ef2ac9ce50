# -*- test-case-name: tests.test_config -*-
"""
The flat exception hierarchy of AI Connect.

Every exception AI Connect raises on purpose derives from L{AiconnectError}:

    - L{ConfigError}: the configuration file is invalid; it names the dotted
      key (C{tenant[0].trunk[1].transport}) and the problem, and C{str()} of it
      is the one line printed when start-up stops.
    - L{SipProtocolError}: a SIP protocol failure carrying a C{status_hint},
      split (like h11's C{LocalProtocolError} / C{RemoteProtocolError}) into
        - L{RemoteSipError}: the peer sent something wrong; the adapter answers
          with C{status_hint} (400 by default, 481, 488, ...) and logs a warning;
        - L{LocalSipError}: our own bug or a misuse of our API; logged with
          C{log.failure}, never blamed on the peer.

This module imports nothing but the standard library.
"""

from __future__ import annotations

__all__ = [
    "AiconnectError",
    "ConfigError",
    "SipProtocolError",
    "RemoteSipError",
    "LocalSipError",
]


class AiconnectError(Exception):
    """
    Base class of every exception AI Connect raises on purpose.
    """


class ConfigError(AiconnectError):
    """
    The configuration is invalid.

    C{str()} is one line: C{config: <dotted.key>: <problem>}, or
    C{config: <problem>} when the problem concerns the whole file (it cannot
    be read or is not valid TOML).

    @ivar key: The dotted path of the offending key, with array indices, e.g.
        C{sip.udp_port} or C{tenant[0].trunk[1].transport}; C{""} for the whole
        file.
    @ivar message: What is wrong with it, without the key.
    """

    def __init__(self, key: str, message: str) -> None:
        """
        @param key: The dotted path of the offending key (C{""} for the file).
        @param message: The problem, one line, without the key.
        """
        super().__init__(key, message)
        self.key = key
        self.message = message

    def __str__(self) -> str:
        """
        @return: C{config: <key>: <message>} on one line.
        """
        text = self.message.replace("\r", " ").replace("\n", " ")
        if self.key:
            return f"config: {self.key}: {text}"
        return f"config: {text}"

    def __repr__(self) -> str:
        """
        @return: A representation showing the key and the message.
        """
        return f"ConfigError(key={self.key!r}, message={self.message!r})"


class SipProtocolError(AiconnectError):
    """
    A SIP protocol failure.

    Abstract: raise L{RemoteSipError} or L{LocalSipError}.

    @cvar default_status_hint: The status used when none is given.
    @ivar status_hint: The SIP status code a UAS should answer with (RFC 3261
        s21), when answering is possible at all.
    @ivar reason: A short human-readable description, usable as the response
        reason phrase.
    @ivar headers: Header fields the answer carries (empty by default).
    """

    default_status_hint: int = 500

    def __init__(
        self, reason: str, status_hint: int | None = None, headers: tuple[tuple[str, str], ...] | list[tuple[str, str]] = ()
    ) -> None:
        """
        @param reason: A short description of the failure.
        @param status_hint: The SIP status to answer with; the class's
            C{default_status_hint} when omitted.
        @param headers: Header fields the answer carries (C{Retry-After} of
            a 503, C{Min-SE} of a 422, RFC 3261 s21 / RFC 4028 s6).
        """
        if status_hint is None:
            status_hint = self.default_status_hint
        super().__init__(reason, status_hint)
        self.reason = reason
        self.status_hint = status_hint
        self.headers: list[tuple[str, str]] = list(headers)

    def __str__(self) -> str:
        """
        @return: C{"<status_hint> <reason>"}.
        """
        return f"{self.status_hint} {self.reason}"

    def __repr__(self) -> str:
        """
        @return: A representation showing the class, reason and status hint.
        """
        return (
            f"{type(self).__name__}(reason={self.reason!r}, "
            f"status_hint={self.status_hint!r})"
        )


class RemoteSipError(SipProtocolError):
    """
    The peer violated the protocol (malformed message, unknown dialog,
    unacceptable offer ...); the adapter answers with C{status_hint}.
    """

    default_status_hint = 400


class LocalSipError(SipProtocolError):
    """
    We violated the protocol or our own API (an unexpected input to a state
    machine, a response built for the wrong request ...): a bug on our side.
    """

    default_status_hint = 500
