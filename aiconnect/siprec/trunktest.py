# -*- test-case-name: tests.integration.test_trunk_health,tests.api.test_trunks -*-
"""
The trunk test of C{POST /{domain}/trunks/{match}/test} (SPEC s13): DNS,
then against every target at once: connect, TLS, OPTIONS and digest, each
step reported as C{{"step", "ok", "ms", "detail"}}.

- C{dns}: the trunk resolved per RFC 3263 (the targets in order);
- C{connect}: a TCP connection to the target (TCP and TLS trunks; UDP has
  no connection: skipped);
- C{tls}: a TLS handshake with the certificate verified against the
  trunk's host (L{aiconnect.tlsutil.client_context_factory}); the verify
  error is the detail when it fails;
- C{options}: an OPTIONS through the SIP stack: the status and the time;
- C{digest}: when the trunk has credentials and the OPTIONS was challenged
  (401/407), the OPTIONS again with credentials: accepted or not; not
  challenged is said so.

Every step is bounded by L{STEP_TIMEOUT}; at most
L{aiconnect.siprec.probe.MAX_PROBED_TARGETS} targets are tested.  No
credential, nonce or digest response reaches the answer or the logs.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, TypeVar

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from aiconnect.sip.peer import Peer
from aiconnect.sip.ua import InviteFailed
from aiconnect.siprec.dialer import authorization, peer_text, request_uri
from aiconnect.siprec.probe import MAX_PROBED_TARGETS, probe_verdict

__all__ = ["STEP_TIMEOUT", "StepTimeout", "TrunkTester", "bounded"]

#: Seconds one step may take.
STEP_TIMEOUT = 5.0

T = TypeVar("T")


class StepTimeout(Exception):
    """
    A step took longer than its bound.
    """


def bounded(reactor: Any, d: defer.Deferred[T], timeout: float) -> defer.Deferred[T]:
    """
    A Deferred with C{d}'s result, or failing with L{StepTimeout} after
    C{timeout} seconds; C{d} itself is left alone (a late result is
    dropped).
    """
    out: defer.Deferred[T] = defer.Deferred()

    def expire() -> None:
        if not out.called:
            out.errback(Failure(StepTimeout("no result in %g s" % (timeout,))))

    timer = reactor.callLater(timeout, expire)

    def fire(result: Any) -> None:
        if timer.active():
            timer.cancel()
        if out.called:
            return
        if isinstance(result, Failure):
            out.errback(result)
        else:
            out.callback(result)

    d.addBoth(fire)
    return out


@implementer(IHandshakeListener)
class _Handshake(Protocol):
    """
    Fires C{done} when the TLS handshake (with verification) completed,
    or fails it with the reason the connection was lost.
    """

    def __init__(self) -> None:
        self.done: defer.Deferred[None] = defer.Deferred()

    def handshakeCompleted(self) -> None:
        if not self.done.called:
            self.done.callback(None)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if not self.done.called:
            self.done.errback(reason)


def _error_text(failure: Failure) -> str:
    value = failure.value
    name = type(value).__name__
    text = str(value) or name
    if name == "VerificationError":
        return "certificate verification failed: %s" % (text,)
    if name == "Error" and "certificate" in text:
        return "TLS: %s" % (text,)
    return text


class TrunkTester:
    """
    Runs the steps (see the module docstring).
    """

    def __init__(
        self,
        reactor: Any,
        ua: Any,
        resolver: Any,
        tls_creator: Callable[[str], Any],
        step_timeout: float = STEP_TIMEOUT,
    ) -> None:
        """
        @param reactor: IReactorTime and IReactorTCP.
        @param ua: the L{aiconnect.sip.ua.UserAgent} (OPTIONS).
        @param resolver: C{resolve(target, transport)}.
        @param tls_creator: host name -> the TLS client connection creator
            (L{aiconnect.tlsutil.client_context_factory} with C{[tls]}).
        @param step_timeout: seconds one step may take.
        """
        self._reactor = reactor
        self._ua = ua
        self._resolver = resolver
        self._tls_creator = tls_creator
        self._timeout = step_timeout

    async def run(self, trunk: Any) -> dict[str, Any]:
        """
        Test a trunk.

        @return: C{{"ok", "steps": [dns], "targets": [{"target", "ok",
            "steps": [...]}]}}.
        """
        peers: list[Peer] = []

        async def dns() -> str:
            peers.extend(await self._bounded(self._resolver.resolve(trunk.target, trunk.transport)))
            return "%d target(s): %s" % (len(peers), ", ".join(peer_text(p) for p in peers))

        first = await self._step("dns", dns)
        targets = await defer.gatherResults(
            [defer.ensureDeferred(self._target(trunk, peer)) for peer in peers[:MAX_PROBED_TARGETS]]
        )
        ok = first["ok"] and all(t["ok"] for t in targets)
        return {"ok": ok, "steps": [first], "targets": list(targets)}

    async def _target(self, trunk: Any, peer: Peer) -> dict[str, Any]:
        steps: list[dict[str, Any]] = []
        if peer.transport == "udp":
            steps.append(_skipped("connect", "UDP has no connection"))
            steps.append(_skipped("tls", "not a TLS trunk"))
        else:
            steps.append(await self._step("connect", lambda: self._connect(peer, tls=False)))
            if peer.transport == "tls":
                steps.append(await self._step("tls", lambda: self._connect(peer, tls=True, host=trunk.host)))
            else:
                steps.append(_skipped("tls", "not a TLS trunk"))
        answers: list[Any] = []
        steps.append(await self._step("options", lambda: self._options(trunk, peer, answers)))
        steps.append(await self._digest(trunk, peer, answers))
        return {"target": peer_text(peer), "ok": all(s["ok"] for s in steps), "steps": steps}

    async def _step(self, name: str, work: Callable[[], Awaitable[str]]) -> dict[str, Any]:
        started = self._reactor.seconds()
        try:
            detail = await work()
            ok = True
        except _StepFailed as e:
            detail, ok = str(e), False
        except Exception:
            detail, ok = _error_text(Failure()), False
        ms = int(round((self._reactor.seconds() - started) * 1000))
        return {"step": name, "ok": ok, "ms": ms, "detail": detail}

    async def _bounded(self, d: defer.Deferred[T]) -> T:
        return await bounded(self._reactor, d, self._timeout)

    async def _connect(self, peer: Peer, tls: bool, host: str = "") -> str:
        endpoint_class = TCP6ClientEndpoint if ":" in peer.host else TCP4ClientEndpoint
        endpoint: Any = endpoint_class(self._reactor, peer.host, peer.port, timeout=self._timeout)
        if tls:
            endpoint = wrapClientTLS(self._tls_creator(host), endpoint)
        proto = await self._bounded(endpoint.connect(Factory.forProtocol(_Handshake)))
        try:
            if tls:
                await self._bounded(proto.done)
        finally:
            proto.done.addErrback(lambda f: None)  # our own abort, below
            if proto.transport is not None:
                proto.transport.abortConnection()
        if tls:
            return "handshake done, certificate valid for %s" % (host,)
        return "connected to %s" % (peer_text(peer),)

    async def _send_options(self, trunk: Any, peer: Peer, **retry: Any) -> tuple[Any, Any]:
        request, d = self._ua.request("OPTIONS", request_uri(trunk, peer), peer, **retry)
        try:
            response = await self._bounded(d)
        except InviteFailed as e:
            raise _StepFailed(e.reason) from None
        return request, response

    async def _options(self, trunk: Any, peer: Peer, answers: list[Any]) -> str:
        request, response = await self._send_options(trunk, peer)
        answers.append((request, response))
        status, alive = probe_verdict(response)
        if not alive:
            raise _StepFailed(status)
        if response.status in (401, 407):
            return status + " (challenged: see digest)"
        return status

    async def _digest(self, trunk: Any, peer: Peer, answers: list[Any]) -> dict[str, Any]:
        if not trunk.username:
            return _skipped("digest", "the trunk has no credentials")
        if not answers:
            return {"step": "digest", "ok": False, "ms": 0, "detail": "not run: no OPTIONS answer"}
        request, response = answers[0]
        if response.status not in (401, 407):
            return {"step": "digest", "ok": True, "ms": 0, "detail": "not challenged: the target asks no credentials"}

        async def retry() -> str:
            header = authorization(response, request, trunk)
            if header is None:
                raise _StepFailed("%d without a challenge" % (response.status,))
            _, again = await self._send_options(
                trunk,
                peer,
                headers=[header],
                call_id=request.call_id,
                from_tag=request.from_tag,
                cseq=request.cseq.number + 1,
            )
            status, alive = probe_verdict(again)
            if again.status in (401, 407) or not alive:
                raise _StepFailed("credentials not accepted: " + status)
            return "credentials accepted: " + status

        return await self._step("digest", retry)


class _StepFailed(Exception):
    """
    A step failed; the message is its detail.
    """


def _skipped(name: str, why: str) -> dict[str, Any]:
    return {"step": name, "ok": True, "ms": 0, "detail": "skipped: " + why, "skipped": True}
