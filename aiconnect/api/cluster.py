# -*- test-case-name: tests.cluster_rest.test_rest_any_node,tests.cluster_rest.test_signatures -*-
"""
The REST API on any node of a cluster (SPEC s14, docs/api.md "Several
nodes"): a tenant request about a session this node does not hold is
passed to the node that owns it, and C{GET /{domain}/sessions} lists the
sessions of every live node.

Only with C{[database] url = "postgresql://..."}: L{aiconnect.tap} gives
the L{ApiServer<aiconnect.api.routes.ApiServer>} a L{ClusterRest}; a
single node has none and runs none of this.

    - The tenant's credential is checked on the node the request reached
      first (never is an unauthenticated request passed on); then the
      request goes, with its own C{Authorization} header and body, to the
      owner's C{api_url} (the session directory and the owner's live
      lease, L{aiconnect.storage}), and the owner's answer (status, body,
      C{Content-Type}, C{Retry-After}, C{WWW-Authenticate} ...) is
      returned unchanged.
    - Node-to-node requests carry L{NODE_HEADER} (the sender's node id),
      L{TIME_HEADER} and L{SIGNATURE_HEADER}: an HMAC-SHA256 with
      C{[cluster] secret} over the method, the path (with its query), the
      SHA-256 of the body, the time and the sender's id
      (L{NodeSignatures}).  The receiver checks it (constant-time, at most
      L{MAX_SKEW} seconds apart) and refuses a missing, forged or expired
      one with 403, logged without the secret.  A signed request is
      answered by its receiver alone: it is never passed on again (the
      loop guard) and its session list is this node's only.
    - An owner that does not answer within L{TIMEOUT} seconds (or whose
      lease expired) gives 503; a session the directory does not know
      gives 404, as on one node.  A node that does not answer a list in
      time is left out and the answer says C{"incomplete": true}.

The HTTP client is the service's L{twisted.web.client.Agent} (the one
under its treq client, L{aiconnect.webhooks.agent} C{pooled_client}: a
persistent connection pool, closed on stop): node-to-node requests are
GETs and POSTs whose answer headers are passed on, which the lean callback
client (POST only, C{Retry-After} only) does not do, and they are as rare
as REST requests.  The agent itself rather than treq: it sends the path
exactly as given (treq re-encodes URLs, and the signature covers the
path).  Answers are read up to L{MAX_ANSWER} bytes; a request that takes
longer than the timeout has its connection aborted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer, IRequest
from zope.interface import implementer

from aiconnect.api.auth import peer_of
from aiconnect.api.jsonio import MAX_BODY, ApiRequestError, error_answer, json_answer

__all__ = [
    "MAX_ANSWER",
    "MAX_SKEW",
    "NODE_HEADER",
    "SIGNATURE_HEADER",
    "TIMEOUT",
    "TIME_HEADER",
    "ClusterRest",
    "NodeSignatures",
    "SessionElsewhere",
    "sign",
]

#: The sender's node id (C{[node] id}); its presence makes a request
#: node-to-node: answered by its receiver alone.
NODE_HEADER = b"x-aiconnect-node"
#: When the sender signed it (Unix seconds).
TIME_HEADER = b"x-aiconnect-node-time"
#: C{v1=<hex HMAC-SHA256>} (L{sign}).
SIGNATURE_HEADER = b"x-aiconnect-node-signature"
_NODE_HEADERS = (NODE_HEADER, TIME_HEADER, SIGNATURE_HEADER)

#: Seconds a signature's time may differ from the receiver's clock.
MAX_SKEW = 30.0
#: Seconds another node has to answer (connect, answer and body).
TIMEOUT = 5.0
#: Most bytes of another node's answer read.
MAX_ANSWER = 4 * 1024 * 1024

#: The answer headers of the owner passed on to the client.
PASSED_HEADERS = (b"content-type", b"cache-control", b"retry-after", b"www-authenticate", b"allow")

# Longest node id and time accepted in the headers (node ids are at most
# 64 characters, aiconnect.config).
_MAX_NODE_ID = 64
_MAX_TIME = 32


def sign(secret: str, method: bytes, path: bytes, body: bytes, timestamp: bytes, node_id: bytes) -> bytes:
    """
    The node-to-node signature of a request.

    @param secret: C{[cluster] secret}.
    @param method: The request's method (C{GET}, C{POST}).
    @param path: Its path, with its query if any (the request URI).
    @param body: Its body (C{b""} for none).
    @param timestamp: L{TIME_HEADER}'s value.
    @param node_id: L{NODE_HEADER}'s value.
    @return: C{v1=<hex>}: HMAC-SHA256 with C{secret} over the fields
        above, the body as its SHA-256, one per line.
    """
    message = b"\n".join(
        (b"aiconnect-node-v1", method, path, hashlib.sha256(body).hexdigest().encode("ascii"), timestamp, node_id)
    )
    return b"v1=" + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest().encode("ascii")


def request_body(request: IRequest) -> bytes:
    """
    @return: The request's body (at most L{MAX_BODY} + 1 bytes: the routes
        refuse larger ones).
    """
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    data: bytes = content.read(MAX_BODY + 1)
    content.seek(0)
    return data


class NodeSignatures:
    """
    Signs this node's requests to the others and checks theirs.

    @ivar refused: Node-to-node requests refused (missing, forged or
        expired signature).
    """

    log = Logger()

    def __init__(self, secret: str, node_id: str, clock: Any, max_skew: float = MAX_SKEW) -> None:
        """
        @param secret: C{[cluster] secret}.
        @param node_id: This node's id.
        @param clock: The reactor (its C{seconds}).
        @param max_skew: Seconds a signature's time may differ from ours.
        """
        self._secret = secret
        self.node_id = node_id
        self._clock = clock
        self._max_skew = max_skew
        self.refused = 0

    def headers(self, method: bytes, path: bytes, body: bytes) -> dict[bytes, bytes]:
        """
        @return: The node headers of a request of this node.
        """
        node = self.node_id.encode("ascii")
        timestamp = b"%.3f" % self._clock.seconds()
        return {
            NODE_HEADER: node,
            TIME_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, method, path, body, timestamp, node),
        }

    def check(self, request: IRequest) -> bool:
        """
        Whether C{request} comes from another node, its signature checked.

        @return: C{False} for a request without any node header (a
            client's); C{True} for a correctly signed one.
        @raise ApiRequestError: 403 for a node header with a missing,
            forged or expired signature (logged, without the secret).
        """
        values = [request.getHeader(name) for name in _NODE_HEADERS]
        if all(value is None for value in values):
            return False
        node, timestamp, signature = values
        problem = self._problem(request, node, timestamp, signature)
        if problem is None:
            return True
        self.refused += 1
        claimed = node[:_MAX_NODE_ID].decode("ascii", "replace") if node else "-"
        self.log.warn(
            "API: node-to-node request {method} {path} from {peer} (node {node}) refused: {problem}",
            method=request.method.decode("ascii", "replace"),
            path=request.path[:256].decode("ascii", "replace"),
            peer=peer_of(request),
            node=claimed,
            problem=problem,
        )
        raise ApiRequestError(403, f"node-to-node request refused: {problem}")

    def _problem(self, request: IRequest, node: bytes | None, timestamp: bytes | None, signature: bytes | None) -> str | None:
        """
        @return: What is wrong with the node headers, or L{None}.
        """
        if not node or not timestamp or not signature:
            return "missing " + ", ".join(
                name.decode("ascii") for name, value in zip(_NODE_HEADERS, (node, timestamp, signature)) if not value
            )
        if len(node) > _MAX_NODE_ID or len(timestamp) > _MAX_TIME:
            return "malformed node headers"
        try:
            when = float(timestamp)
        except ValueError:
            return "malformed time"
        if not math.isfinite(when) or abs(self._clock.seconds() - when) > self._max_skew:
            return f"time more than {self._max_skew:g} s away from this node's clock"
        expected = sign(self._secret, request.method, request.uri, request_body(request), timestamp, node)
        if not hmac.compare_digest(expected, signature):
            return "bad signature"
        return None


class SessionElsewhere(Exception):
    """
    A session this node does not hold, asked by a client: perhaps another
    node's (L{ClusterRest.pass_on}).

    @ivar session_id: Its id.
    """

    def __init__(self, session_id: str) -> None:
        super().__init__(session_id)
        self.session_id = session_id


class _Unreachable(Exception):
    pass


class ClusterRest:
    """
    The node-to-node part of the REST API (see the module docstring).

    @ivar signatures: The L{NodeSignatures}.
    @ivar timeout: Seconds another node has to answer.
    @ivar stats: Counters: C{forwarded} (requests passed to their owner and
        answered), C{forward_failures} (owner lost, unreachable or too
        slow: 503), C{lists_incomplete} (lists missing a node),
        C{refused} (node-to-node requests refused).
    """

    log = Logger()

    def __init__(
        self,
        signatures: NodeSignatures,
        pool: Callable[[], Any],
        lease: float,
        agent: Any,
        clock: Any,
        timeout: float = TIMEOUT,
    ) -> None:
        """
        @param signatures: This node's signatures.
        @param pool: Returns the shared database's pool (an adbapi
            C{ConnectionPool}), or L{None} while it is not open.
        @param lease: C{[cluster] lease}.
        @param agent: An L{IAgent<twisted.web.iweb.IAgent>}.
        @param clock: The reactor.
        @param timeout: Seconds another node has to answer.
        """
        self.signatures = signatures
        self._pool = pool
        self._lease = lease
        self._agent = agent
        self._clock = clock
        self.timeout = timeout
        self._counts = {"forwarded": 0, "forward_failures": 0, "lists_incomplete": 0}

    def stats(self) -> dict[str, int]:
        """
        @return: The counters (a stats provider of C{/metrics}).
        """
        return dict(self._counts, refused=self.signatures.refused)

    def from_node(self, request: IRequest) -> bool:
        """
        L{NodeSignatures.check}: whether C{request} is a signed request of
        another node (answered here alone).

        @raise ApiRequestError: 403 for a bad node signature.
        """
        return self.signatures.check(request)

    # --- the shared database -------------------------------------------------

    async def _live(self) -> list[Any]:
        """
        @return: The live leases (L{aiconnect.storage.nodes.NodeLease}).
        """
        from aiconnect.storage.nodes import SqlNodeLeases

        pool = self._pool()
        if pool is None:
            raise _Unreachable("the shared database is not open")
        live: list[Any] = await SqlNodeLeases(pool, self._lease).live(self._clock.seconds())
        return live

    async def _owner(self, session_id: str) -> Any:
        """
        @return: The live lease of the other node owning C{session_id}.
        @raise ApiRequestError: 404 when no other node owns it.
        @raise _Unreachable: When the owner's lease expired, or the database
            cannot be read.
        """
        from aiconnect.storage.directory import SqlSessionDirectory

        pool = self._pool()
        if pool is None:
            raise _Unreachable("the shared database is not open")
        try:
            owner, live = await gatherResults(
                [SqlSessionDirectory(pool).owner(session_id), Deferred.fromCoroutine(self._live())], consumeErrors=True
            )
        except Exception as e:
            self.log.error("API: the session directory could not be read: {why}", why=_reason(e))
            raise _Unreachable("the session directory could not be read") from None
        if owner is None or owner.node_id == self.signatures.node_id:
            raise ApiRequestError(404, "unknown session", "sessionId")
        for lease in live:
            if lease.node_id == owner.node_id and lease.api_url:
                return lease
        raise _Unreachable(f"node {owner.node_id} has no live lease")

    # --- node-to-node requests -----------------------------------------------

    async def _exchange(self, api_url: str, request: IRequest, body: bytes) -> tuple[int, Headers, bytes]:
        """
        Send C{request} (its method, path, C{Authorization} and body),
        signed, to the node at C{api_url}.

        @return: Its answer's status, headers and body.
        """
        method, path = request.method, origin_form(request.uri)
        headers = Headers({name: [value] for name, value in self.signatures.headers(method, path, body).items()})
        for name in (b"authorization", b"content-type"):
            value = request.getHeader(name)
            if value is not None:
                headers.setRawHeaders(name, [value])
        producer = _BytesProducer(body) if body else None
        response = await self._agent.request(method, api_url.rstrip("/").encode("utf-8") + path, headers, producer)
        return response.code, response.headers, await _read_bounded(response)

    def _timed(self, work: Any) -> Deferred[Any]:
        return Deferred.fromCoroutine(work).addTimeout(self.timeout, self._clock)

    def pass_on(self, request: IRequest, session_id: str) -> Deferred[bytes]:
        """
        Answer a client's request about a session this node does not hold
        with the answer of the node that owns it.

        @return: Fires with the body (status and headers set on
            C{request}): the owner's answer; 404 when no other node owns
            the session; 503 when the owner cannot be reached in time.
        """
        return Deferred.fromCoroutine(self._pass_on(request, session_id))

    async def _pass_on(self, request: IRequest, session_id: str) -> bytes:
        try:
            lease = await self._timed(self._owner(session_id))
            status, headers, body = await self._timed(self._exchange(lease.api_url, request, request_body(request)))
        except ApiRequestError as e:
            return error_answer(request, e.status, e.message, e.field)
        except Exception as e:
            self._counts["forward_failures"] += 1
            why = str(e) if isinstance(e, _Unreachable) else _reason(e)
            self.log.warn(
                "API: session {session_id} is on another node, which did not answer: {why}",
                session_id=session_id,
                why=why,
            )
            return error_answer(request, 503, "the node holding this session is not reachable", "sessionId")
        self._counts["forwarded"] += 1
        request.setResponseCode(status)
        for name in PASSED_HEADERS:
            values = headers.getRawHeaders(name)
            if values:
                request.responseHeaders.setRawHeaders(name, values)
        return body

    def merged_list(self, request: IRequest, sessions: list[dict[str, Any]]) -> Deferred[bytes]:
        """
        Answer C{GET /{domain}/sessions} with this node's C{sessions} and
        those of every other live node (asked with the client's
        credential), each session once.

        @return: Fires with the body: C{{"success": true, "sessions": [...]}}
            plus C{"incomplete": true} when a node did not answer in time.
        """
        return Deferred.fromCoroutine(self._merged_list(request, sessions))

    async def _merged_list(self, request: IRequest, sessions: list[dict[str, Any]]) -> bytes:
        try:
            live = await self._timed(self._live())
        except Exception as e:
            self.log.warn("API: the nodes could not be read; sessions of this node only: {why}", why=_reason(e))
            others: list[Any] = []
            incomplete = True
        else:
            others = [lease for lease in live if lease.node_id != self.signatures.node_id]
            incomplete = False
        if others:
            # Each fires with a list or None (never fails).
            answers = await gatherResults([Deferred.fromCoroutine(self._list_of(lease, request)) for lease in others])
            seen = {session.get("sessionId") for session in sessions}
            for listed in answers:
                if listed is None:
                    incomplete = True
                    continue
                for session in listed:
                    if isinstance(session, dict) and session.get("sessionId") not in seen:
                        seen.add(session.get("sessionId"))
                        sessions.append(session)
        payload: dict[str, Any] = {"success": True, "sessions": sessions}
        if incomplete:
            self._counts["lists_incomplete"] += 1
            payload["incomplete"] = True
        return json_answer(request, 200, payload)

    async def _list_of(self, lease: Any, request: IRequest) -> list[Any] | None:
        """
        @return: The sessions another node lists, or L{None} (logged) when
            it does not answer with a list.
        """
        try:
            status, _, body = await self._timed(self._exchange(lease.api_url, request, b""))
            listed = json.loads(body)["sessions"] if status == 200 else None
            if not isinstance(listed, list):
                raise _Unreachable(f"answered {status}")
            return listed
        except Exception as e:
            self.log.warn(
                "API: node {node_id} did not list its sessions ({why}); the list is incomplete",
                node_id=lease.node_id,
                why=_reason(e),
            )
            return None


class _TooLarge(Exception):
    def __str__(self) -> str:
        return f"answer larger than {MAX_ANSWER} bytes"


@implementer(IBodyProducer)
class _BytesProducer:
    """
    A request body held in memory (at most L{MAX_BODY} bytes), written at
    once.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _Body(Protocol):
    """
    Reads an answer's body up to L{MAX_ANSWER} bytes into C{done}; beyond,
    or when C{done} is cancelled (the timeout), the connection is
    aborted.
    """

    def __init__(self) -> None:
        self.done: Deferred[bytes] = Deferred(lambda _: self._abort())
        self._chunks: list[bytes] = []
        self._size = 0

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self._size += len(data)
        if self._size > MAX_ANSWER:
            self.done.errback(_TooLarge())
            self._abort()
            return
        self._chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self._chunks))
        else:
            self.done.errback(reason)


def _read_bounded(response: Any) -> Deferred[bytes]:
    """
    @return: Fires with the body of an agent's response (at most
        L{MAX_ANSWER} bytes).
    """
    body = _Body()
    response.deliverBody(body)
    return body.done


def origin_form(uri: bytes) -> bytes:
    """
    @return: The path and query of a request URI (a client may send the
        absolute form, RFC 9112 s3.2.2).
    """
    if uri.startswith(b"/"):
        return uri
    parts = urlsplit(uri)
    return (parts.path or b"/") + (b"?" + parts.query if parts.query else b"")


def _reason(error: BaseException) -> str:
    """
    @return: A short text for a failure of a node-to-node request (the
        secret is never in it: it is sent nowhere but in the HMAC).
    """
    from twisted.internet.defer import CancelledError, TimeoutError

    if isinstance(error, (CancelledError, TimeoutError)):
        return "no answer in time"
    sub = getattr(error, "subFailure", None)
    if sub is not None:
        return _reason(sub.value)
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
