# -*- test-case-name: tests.siprec.test_health,tests.integration.test_trunk_health -*-
"""
OPTIONS probing of trunk targets (SPEC s13): every C{probe_interval}
seconds each trunk with C{probe_interval > 0} is resolved (RFC 3263) and
each of its targets gets an out-of-dialog OPTIONS (RFC 3261 s11).  A
response other than 408 or 5xx marks the target up; a timeout, a
transport or TLS failure, a 408 or a 5xx marks it down for the trunk's
C{down_for} (L{aiconnect.siprec.health.TargetHealth}).

Bounded: one resolution in flight per trunk, one probe in flight per
target, at most L{MAX_PROBED_TARGETS} targets per trunk; everything stops
with the service.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from twisted.application import service
from twisted.internet import task
from twisted.logger import Logger
from twisted.python.failure import Failure

from aiconnect.sip.message import Response
from aiconnect.sip.peer import Peer
from aiconnect.sip.ua import InviteFailed
from aiconnect.siprec.dialer import request_uri
from aiconnect.siprec.health import TargetHealth, target_key

__all__ = ["MAX_PROBED_TARGETS", "TrunkProber", "probe_verdict"]

#: At most this many targets of one trunk are probed.
MAX_PROBED_TARGETS = 16


def probe_verdict(result: Response | InviteFailed) -> tuple[str, bool]:
    """
    What an OPTIONS outcome says of its target.

    @param result: the final response, or the failure (timeout, transport).
    @return: C{(status text, alive)}: alive unless a timeout, a transport
        or TLS failure, a 408 or a 5xx (SPEC s13).
    """
    if isinstance(result, InviteFailed):
        return (result.reason, False)
    status = result.status
    return ("%d %s" % (status, result.reason), status != 408 and not 500 <= status < 600)


class TrunkProber(service.Service):
    """
    The probing service (see the module docstring), named C{probe}.

    @ivar stats: counters: C{probes}, C{up}, C{down}, C{skipped} (a probe
        still in flight), C{dns_failures}.
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        ua: Any,
        resolver: Any,
        health: TargetHealth,
        trunks: Callable[[], Iterable[Any]],
    ) -> None:
        """
        @param reactor: IReactorTime.
        @param ua: the L{aiconnect.sip.ua.UserAgent} sending the OPTIONS.
        @param resolver: C{resolve(target, transport) -> Deferred[list[Peer]]}.
        @param health: the registry the verdicts go to.
        @param trunks: gives the configured trunks (each tenant's).
        """
        self.name = "probe"
        self._reactor = reactor
        self._ua = ua
        self._resolver = resolver
        self._health = health
        self._trunks = trunks
        self._loops: list[task.LoopingCall] = []
        self._resolving: set[tuple[str, str]] = set()
        self._in_flight: set[tuple[str, str, int]] = set()
        self.stats: dict[str, int] = {"probes": 0, "up": 0, "down": 0, "skipped": 0, "dns_failures": 0}

    def startService(self) -> None:
        service.Service.startService(self)
        for trunk in self._trunks():
            if trunk.probe_interval > 0:
                loop = task.LoopingCall(self.probe_trunk, trunk)
                loop.clock = self._reactor
                self._loops.append(loop)
                loop.start(trunk.probe_interval, now=True).addErrback(self._bug)

    def stopService(self) -> None:
        service.Service.stopService(self)
        loops, self._loops = self._loops, []
        for loop in loops:
            if loop.running:
                loop.stop()

    def probe_trunk(self, trunk: Any) -> None:
        """
        Resolve a trunk and probe each of its targets (one resolution in
        flight per trunk).
        """
        key = (trunk.target, trunk.transport)
        if key in self._resolving:
            return
        self._resolving.add(key)
        d = self._resolver.resolve(trunk.target, trunk.transport)

        def resolved(peers: list[Peer]) -> None:
            self._resolving.discard(key)
            if not self.running:
                return
            for peer in peers[:MAX_PROBED_TARGETS]:
                self.probe(trunk, peer)

        def failed(failure: Failure) -> None:
            self._resolving.discard(key)
            self.stats["dns_failures"] += 1
            self.log.info("probe: {target} not resolved: {error}", target=trunk.target, error=failure.getErrorMessage())

        d.addCallbacks(resolved, failed)
        d.addErrback(self._bug)

    def probe(self, trunk: Any, peer: Peer) -> None:
        """
        Send one OPTIONS to a target unless one is in flight, and report
        the verdict to the registry.
        """
        key = target_key(peer)
        if key in self._in_flight:
            self.stats["skipped"] += 1
            return
        self._in_flight.add(key)
        self.stats["probes"] += 1
        started = self._reactor.seconds()
        _, d = self._ua.request("OPTIONS", request_uri(trunk, peer), peer)

        def done(result: Any) -> None:
            self._in_flight.discard(key)
            if isinstance(result, Failure):
                result.trap(InviteFailed)
                result = result.value
            status, alive = probe_verdict(result)
            self._health.probed(peer, status, int(round((self._reactor.seconds() - started) * 1000)))
            if alive:
                self.stats["up"] += 1
                self._health.target_answered(peer)
            else:
                self.stats["down"] += 1
                self._health.target_failed(peer, "OPTIONS: " + status, trunk.down_for)

        d.addBoth(done)
        d.addErrback(self._bug)

    def _bug(self, failure: Failure) -> None:
        self.log.failure("trunk prober bug", failure)
