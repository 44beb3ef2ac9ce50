# -*- test-case-name: tests.test_timers -*-
"""
Re-arming a timer without Twisted's linear-time path.

C{DelayedCall.reset} to a later time is cheap (the reactor re-sorts the
call lazily), but to an earlier time it runs
C{ReactorBase._moveCallLaterSooner}, which finds the call with
C{list.index} over every pending timer of the process: linear in the number
of timers.  With thousands of live sessions (transaction, session and media
timers) that one method took 16 % of a forwarded call's CPU on the
signalling benchmark (issue 12).  L{rearm} moves a call later with
C{reset} and sooner by cancelling it (constant time: the reactor drops
cancelled calls lazily) and scheduling a new one (logarithmic).

No Twisted import: the reactor and the call are passed in.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["rearm"]


def rearm(reactor: Any, call: Any, delay: float, function: Callable[..., object], *args: object) -> Any:
    """
    The timer that calls C{function(*args)} C{delay} seconds from now.

    @param reactor: An C{IReactorTime}.
    @param call: The current C{IDelayedCall} of that timer, or L{None}; an
        inactive one is replaced.
    @param delay: Seconds from now.
    @param function: What the timer calls (used when a new call is made).
    @param args: Its arguments.
    @return: C{call} itself, moved later, when it is active and not due
        sooner; otherwise a new call (C{call} is cancelled).
    """
    if call is not None and call.active():
        when = reactor.seconds() + delay
        due = call.getTime()
        if when >= due:
            if when != due:
                call.reset(delay)
            return call
        call.cancel()
    return reactor.callLater(delay, function, *args)
