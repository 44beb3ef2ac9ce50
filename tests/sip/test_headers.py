"""
Tests for L{aiconnect.sip.headers} and the work a message does once: header
names canonicalised once per spelling (within a cap), values parsed once
and cached until the headers change, the serialisation made once until the
message changes, and the per-message debug lines written only at debug
(L{aiconnect.sip.trace}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import task
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.sip import headers as headers_module
from aiconnect.sip import message, trace
from aiconnect.sip.headers import NAME_CACHE_MAX, Headers
from aiconnect.sip.message import Request, make_response, parse
from aiconnect.sip.peer import Peer
from aiconnect.sip.transport import SipTransport
from aiconnect.sip.uri import parse_via
from tests.sip.test_message import RFC3261_F1

F1 = RFC3261_F1.replace(b"Content-Length: 142", b"Content-Length: %d" % len(RFC3261_F1.split(b"\r\n\r\n", 1)[1]))


class HeadersTests(SynchronousTestCase):
    """
    L{Headers} matches names case-insensitively through compact forms, and
    keeps its lines in order through every change.
    """

    def test_names(self) -> None:
        """
        Compact, lower- and upper-case spellings all find the same lines.
        """
        h = Headers([("v", "SIP/2.0/UDP a"), ("VIA", "SIP/2.0/UDP b"), ("x-Custom", "1")])
        self.assertEqual(h.get_all("Via"), ["SIP/2.0/UDP a", "SIP/2.0/UDP b"])
        self.assertEqual(h.count("v"), 2)
        self.assertIn("X-CUSTOM", h)
        self.assertEqual(list(h)[0], ("Via", "SIP/2.0/UDP a"))
        self.assertEqual(list(h)[2], ("x-Custom", "1"))

    def test_changes_keep_order(self) -> None:
        """
        C{set}, C{remove}, C{remove_first}, C{add_first} and C{copy} keep the
        lines and their match keys in step.
        """
        h = Headers([("Via", "a"), ("To", "t"), ("Via", "b, c"), ("Route", "<sip:r>")])
        h.set("via", "z")
        self.assertEqual(list(h), [("Via", "z"), ("To", "t"), ("Route", "<sip:r>")])
        h.add_first("v", "y")
        h.add("Via", "w, x")
        h.remove_first("Via")
        self.assertEqual(h.get_all("Via"), ["z", "w, x"])
        copy = h.copy()
        h.remove("VIA")
        self.assertEqual(list(h), [("To", "t"), ("Route", "<sip:r>")])
        self.assertEqual(copy.get("Via"), "z")
        copy.remove_first("Via")
        copy.remove_first("Via")
        self.assertEqual(copy.get_all("Via"), ["x"])
        self.assertIsNone(copy.get("Max-Forwards"))

    def test_name_cache_bounded(self) -> None:
        """
        Distinct header names from the wire are remembered up to the cap only.
        """
        for i in range(NAME_CACHE_MAX + 100):
            Headers([("X-Flood-%d" % i, "v")])
        self.assertLessEqual(len(headers_module._NAMES), NAME_CACHE_MAX)
        self.assertLessEqual(len(headers_module._TOKEN_NAMES), NAME_CACHE_MAX)
        self.assertIn("Via", headers_module._NAMES)
        self.assertIn("v", headers_module._NAMES)
        # Past the cap, names are still canonicalised (every time).
        self.assertEqual(Headers([("i", "x"), ("X-Late", "y")]).get("call-id"), "x")


class CacheTests(SynchronousTestCase):
    """
    What is parsed from a message's headers is parsed once, and parsed again
    after they change.
    """

    def _count(self, name: str) -> list[Any]:
        calls: list[Any] = []
        real = getattr(message, name)

        def spy(*args: Any, **kwargs: Any) -> Any:
            calls.append(args)
            return real(*args, **kwargs)

        self.patch(message, name, spy)
        return calls

    def test_via_parsed_once(self) -> None:
        """
        Parsing, then every reader of the Via (top, list, the transport's
        C{received} stamp) parse it once in all.
        """
        vias = self._count("parse_via_list")
        msg = parse(F1)
        assert isinstance(msg, Request)
        for _ in range(3):
            self.assertEqual(msg.top_via.branch, "z9hG4bK776asdhds")
            self.assertEqual(len(msg.vias), 1)
        msg.set_top_via(msg.top_via.with_param("received", "192.0.2.1"))
        self.assertEqual(msg.top_via.param("received"), "192.0.2.1")
        self.assertEqual(len(vias), 1)

    def test_other_headers_parsed_once(self) -> None:
        """
        From, To, CSeq and Contact are parsed by the parser's checks and
        read from the cache afterwards.
        """
        names = self._count("parse_name_addr")
        msg = parse(F1)
        parsed = len(names)
        for _ in range(3):
            self.assertEqual(msg.from_tag, "1928301774")
            self.assertIsNone(msg.to_tag)
            self.assertEqual(msg.cseq.number, 314159)
        self.assertEqual(len(names), parsed)

    def test_change_parses_again(self) -> None:
        """
        A changed header is parsed anew: the cache never serves a stale value.
        """
        msg = parse(F1)
        self.assertEqual(msg.cseq.number, 314159)
        self.assertEqual(msg.top_via.host, "pc33.atlanta.com")
        msg.headers.set("CSeq", "7 INVITE")
        msg.headers.add_first("Via", "SIP/2.0/TCP proxy.example.com;branch=z9hG4bKp")
        msg.headers.set("To", "<sip:bob@biloxi.com>;tag=b1")
        self.assertEqual(msg.cseq.number, 7)
        self.assertEqual(msg.top_via.host, "proxy.example.com")
        self.assertEqual(len(msg.vias), 2)
        self.assertEqual(msg.to_tag, "b1")
        msg.headers.set("Call-ID", "new@x")
        self.assertEqual(msg.call_id, "new@x")

    def test_stamped_via_equals_reparse(self) -> None:
        """
        The top Via cached by C{set_top_via} is what parsing the written
        message gives, for IPv6, several values on the first line, several
        lines, compact names and LWS in the sent-protocol.
        """
        for lines in (
            ["v: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;rport"],
            ["Via: SIP / 2.0 / UDP host.example.com ;branch=z9hG4bK2, SIP/2.0/TCP other:5070;branch=z9hG4bK3"],
            ["Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK4;received=10.0.0.1", "Via: SIP/2.0/UDP b;branch=z9hG4bK5"],
        ):
            data = F1.replace(
                b"Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n",
                "".join(line + "\r\n" for line in lines).encode(),
            )
            msg = parse(data)
            assert isinstance(msg, Request)
            top = msg.top_via.with_param("received", "2001:db8::9").with_param("rport", "5999")
            msg.set_top_via(top)
            again = parse(msg.to_bytes())
            self.assertEqual(msg.top_via, again.top_via)
            self.assertEqual(msg.vias, again.vias)
            self.assertEqual(msg.headers.get_all("Via"), again.headers.get_all("Via"))

    def test_response_adopts_request_values(self) -> None:
        """
        A response built from a request reuses what the request parsed for
        the lines it copied, and parses the changed To itself.
        """
        request = parse(F1)
        assert isinstance(request, Request)
        vias = self._count("parse_via_list")
        response = make_response(request, 200, to_tag="t1", headers=[("Contact", "<sip:b@biloxi.com>")])
        self.assertEqual(response.top_via, request.top_via)
        self.assertEqual(response.cseq, request.cseq)
        self.assertEqual(response.to_tag, "t1")
        self.assertEqual(vias, [])
        self.assertEqual(response.contacts[0].uri, parse(response.to_bytes()).contacts[0].uri)

    def test_response_with_extra_via_not_adopted(self) -> None:
        """
        Extra lines given to C{make_response} for a copied header (a Via)
        mean the request's parsed value is not taken over.
        """
        request = parse(F1)
        response = make_response(request, 200, headers=[("Via", "SIP/2.0/UDP extra;branch=z9hG4bKx")])
        self.assertEqual(len(response.vias), 2)


class SerialisationTests(SynchronousTestCase):
    """
    A message is serialised once until it changes.
    """

    def test_same_octets_reused(self) -> None:
        """
        Serialising twice gives the same object; any change gives new octets.
        """
        msg = parse(F1)
        assert isinstance(msg, Request)
        first = msg.to_bytes()
        self.assertIs(msg.to_bytes(), first)
        msg.headers.add("Subject", "hello")
        second = msg.to_bytes()
        self.assertIn(b"Subject: hello\r\n", second)
        msg.uri = "sip:carol@chicago.com"
        self.assertTrue(msg.to_bytes().startswith(b"INVITE sip:carol@chicago.com SIP/2.0\r\n"))
        msg.body = b""
        self.assertIn(b"Content-Length: 0\r\n", msg.to_bytes())
        response = make_response(msg, 486)
        wire = response.to_bytes()
        self.assertIs(response.to_bytes(), wire)
        response.status = 603
        self.assertTrue(response.to_bytes().startswith(b"SIP/2.0 603 "))


class TraceTests(SynchronousTestCase):
    """
    The transport's per-message debug lines follow L{trace.debug}.
    """

    def _receive(self) -> list[dict[str, Any]]:
        clock = task.Clock()
        transport = SipTransport(clock)
        with capturedLogs() as events:
            transport.data_received(F1, Peer("udp", "192.0.2.1", 5060), datagram=True)
        return [e for e in events if formatEvent(e).startswith("recv INVITE sip:bob@biloxi.com ")]

    def test_debug_lines_follow_level(self) -> None:
        """
        At debug a received request is logged with its Call-ID; at info
        the line is not even built.
        """
        self.addCleanup(setattr, trace, "debug", trace.debug)
        trace.set_level("debug")
        lines = self._receive()
        self.assertEqual([e["call_id"] for e in lines], ["a84b4c76e66710@pc33.atlanta.com"])
        trace.set_level("info")
        self.assertEqual(self._receive(), [])

    def test_stamp_uses_parsed_via(self) -> None:
        """
        The transport's C{received} stamp on an incoming request is read
        back from the cache, equal to a parse of what it wrote.
        """
        transport = SipTransport(task.Clock())
        got: list[Any] = []

        class Receiver:
            def message_received(self, msg: Any, source: Peer) -> None:
                got.append(msg)

        transport.receiver = Receiver()  # type: ignore[assignment]
        transport.data_received(F1, Peer("udp", "192.0.2.1", 5060), datagram=True)
        self.assertEqual(got[0].top_via, parse_via(got[0].headers.get("Via")))
        self.assertEqual(got[0].top_via.param("received"), "192.0.2.1")
