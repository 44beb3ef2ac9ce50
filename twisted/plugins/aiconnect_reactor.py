"""
twistd reactor plugin: C{twistd --reactor=aiconnect-epoll ...} (see
L{aiconnect.relayreactor}).
"""

from twisted.application.reactors import Reactor

aiconnect_epoll = Reactor(
    "aiconnect-epoll",
    "aiconnect.relayreactor",
    "epoll with direct dispatch of AI Connect's RTP relay sockets (Linux)",
)
