# -*- test-case-name: tests.test_tap -*-
"""
The C{aiconnect-epoll} reactor for twistd::

    twistd --reactor=aiconnect-epoll -n aiconnect --config etc/aiconnect.toml

Twisted's epoll reactor with the RTP relay's sockets dispatched directly
(L{aiconnect.media.sockets.RelayEPollReactor}): about 500 forwarded calls with
transcoding and SRTP on one core instead of 350 (docs/media.md). Where epoll
is missing it installs Twisted's default reactor instead.
"""

from __future__ import annotations


def install() -> None:
    """
    Install the relay reactor (twistd's C{--reactor} hook).
    """
    from aiconnect.media.sockets import RelayEPollReactor

    if RelayEPollReactor is None:
        from twisted.internet import default

        default.install()
        return
    from twisted.internet.main import installReactor

    installReactor(RelayEPollReactor())
