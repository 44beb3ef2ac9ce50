# -*- test-case-name: tests.sip.test_session_timer -*-
"""
SIP session timers (RFC 4028), pure: parsing C{Session-Expires}, the UAS
negotiation, and when a session's timer fires and what it then means.

Both legs use it: the inbound (we are the UAS of the SRC's INVITE) and the
forwards (we are the UAC towards the SRS).  The adapters keep one
C{IDelayedCall} armed at L{SessionTimer.delay}; nothing here reads a clock
or imports Twisted.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from aiconnect.errors import RemoteSipError
from aiconnect.sip import abnf

__all__ = [
    "MIN_SE",
    "Negotiated",
    "SessionExpires",
    "SessionTimer",
    "TimerAction",
    "format_session_expires",
    "negotiate_uas",
    "parse_session_expires",
]

#: RFC 4028 s5: our minimum session interval.
MIN_SE = 90
#: RFC 4028 s10: the expiring side sends BYE this long (at most) before the
#: interval ends, or a third of the interval when that is shorter.
EXPIRY_GRACE = 32.0


@dataclass(frozen=True, slots=True)
class SessionExpires:
    """
    A parsed C{Session-Expires} (RFC 4028 s4): the interval in seconds and
    the C{refresher} parameter (C{uac}, C{uas}, or L{None} when absent or
    unknown).
    """

    interval: int
    refresher: str | None = None


def parse_session_expires(value: str) -> SessionExpires:
    """
    Parse a C{Session-Expires} header value (C{delta-seconds *(;param)}).

    @raise RemoteSipError: 400 when the interval is not a number.
    """
    parts = [p.strip() for p in value.split(";")]
    if not abnf.is_digits(parts[0], 10):
        raise RemoteSipError("Bad Session-Expires", 400)
    refresher = None
    for p in parts[1:]:
        k, _, v = p.partition("=")
        if k.strip().lower() == "refresher":
            refresher = v.strip().lower()
    if refresher not in ("uac", "uas"):
        refresher = None
    return SessionExpires(int(parts[0]), refresher)


def format_session_expires(interval: int, refresher: str) -> str:
    """
    A C{Session-Expires} value: C{"1800;refresher=uac"}.
    """
    return "%d;refresher=%s" % (interval, refresher)


@dataclass(frozen=True, slots=True)
class Negotiated:
    """
    The session timer a UAS agreed to (RFC 4028 s9).

    @ivar interval: seconds.
    @ivar refresher: C{uac} or C{uas}.
    @ivar headers: the header fields of our 2xx.
    """

    interval: int
    refresher: str
    headers: tuple[tuple[str, str], ...]


def negotiate_uas(value: str | None, uac_supports_timer: bool, min_se: int = MIN_SE) -> Negotiated | None:
    """
    The UAS side of RFC 4028 s9: the session timer an INVITE (or UPDATE)
    asked for, and the headers of our 2xx.

    @param value: its C{Session-Expires}, or L{None} (no session timer).
    @param uac_supports_timer: C{timer} is in its C{Supported} or
        C{Require}.
    @param min_se: our minimum interval.
    @return: L{None} without C{Session-Expires}.
    @raise RemoteSipError: 400 for a malformed value; 422 with C{Min-SE}
        when the interval is below C{min_se} (RFC 4028 s9).
    """
    if value is None:
        return None
    asked = parse_session_expires(value)
    if asked.interval < min_se:
        raise RemoteSipError("Session Interval Too Small", 422, headers=[("Min-SE", str(min_se))])
    refresher = asked.refresher
    if refresher is None:
        refresher = "uac" if uac_supports_timer else "uas"
    if refresher == "uac" and not uac_supports_timer:
        refresher = "uas"
    headers = [("Session-Expires", format_session_expires(asked.interval, refresher))]
    if uac_supports_timer:
        headers.append(("Require", "timer"))
    return Negotiated(asked.interval, refresher, tuple(headers))


class TimerAction(enum.Enum):
    """
    What a session timer's deadline means (RFC 4028 s10).
    """

    #: We are the refresher: send a refresh (UPDATE / re-INVITE).
    REFRESH = "refresh"
    #: The other side is the refresher and did not refresh: end the session.
    EXPIRE = "expire"


@dataclass(frozen=True, slots=True)
class SessionTimer:
    """
    One side's session timer (RFC 4028 s10): the refresher refreshes at
    half the interval; the other side ends the session
    C{min(32, interval/3)} seconds before the interval ends.

    @ivar interval: the session interval in seconds.
    @ivar we_refresh: whether we are the refresher.
    """

    interval: int
    we_refresh: bool

    @property
    def delay(self) -> float:
        """
        Seconds from the last refresh (or the answer) to the deadline.
        """
        if self.we_refresh:
            return self.interval / 2.0
        return self.interval - min(EXPIRY_GRACE, self.interval / 3.0)

    def deadline(self, refreshed_at: float) -> float:
        """
        When the timer fires, for a session last refreshed at
        C{refreshed_at}.
        """
        return refreshed_at + self.delay

    @property
    def action(self) -> TimerAction:
        """
        What to do at the deadline.
        """
        return TimerAction.REFRESH if self.we_refresh else TimerAction.EXPIRE
