"""
Tests for L{aiconnect.sip.uri}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.sip.uri import (
    AbsoluteUri,
    SipUri,
    UriError,
    is_hostname,
    is_ip_address,
    is_ip_literal,
    is_ipv6_literal,
    parse_name_addr,
    parse_uri,
    parse_via,
    split_host_port,
)


class UriTests(SynchronousTestCase):
    """
    SIP and SIPS URIs.
    """

    def test_sips_ipv6_port_params(self) -> None:
        """
        sips: with an IPv6 host, a port and a flag parameter parses and
        serializes unchanged (twisted.protocols.sip.parseURL rejects it).
        """
        text = "sips:alice@[2001:db8::1]:5061;lr;transport=tls"
        uri = parse_uri(text)
        self.assertIsInstance(uri, SipUri)
        self.assertEqual(uri.scheme, "sips")
        self.assertEqual(uri.host, "[2001:db8::1]")
        self.assertEqual(uri.port, 5061)
        self.assertTrue(uri.has_param("lr"))
        self.assertEqual(uri.transport, "tls")
        self.assertEqual(str(uri), text)

    def test_other_scheme_is_opaque(self) -> None:
        """
        tel: and other schemes are kept opaque.
        """
        uri = parse_uri("tel:+1-201-555-0123")
        self.assertIsInstance(uri, AbsoluteUri)
        self.assertEqual(str(uri), "tel:+1-201-555-0123")

    def test_bad_uris(self) -> None:
        """
        Malformed URIs raise UriError.
        """
        for text in ["sip:", "sip:user@", "sip:a@b:99999", "sip:a@[::1", "sip:a b@c", "sip:a@h;", "nothing"]:
            with self.assertRaises(UriError, msg=text):
                parse_uri(text)

    def test_equivalence(self) -> None:
        """
        RFC 3261 s19.1.4: escapes decode, host case does not matter.
        """
        self.assertTrue(parse_uri("sip:%61lice@ATLANTA.com").equivalent(parse_uri("sip:alice@atlanta.com")))
        self.assertFalse(parse_uri("sip:alice@atlanta.com").equivalent(parse_uri("sip:ALICE@atlanta.com")))
        self.assertFalse(parse_uri("sip:a@h;transport=tcp").equivalent(parse_uri("sip:a@h")))


class NameAddrTests(SynchronousTestCase):
    """
    name-addr / addr-spec values.
    """

    def test_flag_param(self) -> None:
        """
        Header flag parameters such as +sip.src are kept (parseAddress raises).
        """
        na = parse_name_addr('"SRC" <sip:2000@src.example.com>;+sip.src;expires=60')
        self.assertEqual(na.display_name, "SRC")
        self.assertTrue(na.has_param("+sip.src"))
        self.assertEqual(na.param("expires"), "60")

    def test_addr_spec_params_are_header_params(self) -> None:
        """
        Without <>, ;tag belongs to the header, not the URI.
        """
        na = parse_name_addr("sip:caller@example.net;tag=134161461246")
        self.assertEqual(na.tag, "134161461246")
        self.assertEqual(na.uri.params, ())

    def test_quoted_pairs(self) -> None:
        """
        Escaped quotes in display names decode.
        """
        na = parse_name_addr(r'"J Rosenberg \\\"" <sip:jdrosen@example.com>;tag=98')
        self.assertEqual(na.display_name, 'J Rosenberg \\"')


class ViaTests(SynchronousTestCase):
    """
    Via values.
    """

    def test_portless_sent_by_not_defaulted(self) -> None:
        """
        A port-less sent-by serializes without :5060 (unlike twisted's Via).
        """
        via = parse_via("SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds")
        self.assertIsNone(via.port)
        self.assertEqual(str(via), "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds")

    def test_ipv6_sent_by(self) -> None:
        """
        An IPv6 sent-by with a port parses (parseViaHeader raises).
        """
        via = parse_via("SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bKx;rport")
        self.assertEqual(via.host, "[2001:db8::1]")
        self.assertEqual(via.port, 5061)
        self.assertTrue(via.has_param("rport"))
        self.assertIsNone(via.rport)

    def test_lws_around_slashes(self) -> None:
        """
        LWS around the sent-protocol slashes is accepted (RFC 4475 wsinv).
        """
        via = parse_via("SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw")
        self.assertEqual(via.transport, "UDP")
        self.assertEqual(via.host, "192.0.2.2")


class HostSyntaxTests(SynchronousTestCase):
    """
    The host checks and L{split_host_port} for configured targets.
    """

    def test_split_host_port(self) -> None:
        """
        Host names, IPv4 and IPv6 literals split into host and optional port.
        """
        self.assertEqual(split_host_port("srs.example.net"), ("srs.example.net", None))
        self.assertEqual(split_host_port("srs.example.net:5061"), ("srs.example.net", 5061))
        self.assertEqual(split_host_port("192.0.2.9:5060"), ("192.0.2.9", 5060))
        self.assertEqual(split_host_port("[2001:db8::1]:5061"), ("2001:db8::1", 5061))
        self.assertEqual(split_host_port("[2001:db8::1]"), ("2001:db8::1", None))
        self.assertEqual(split_host_port("2001:db8::1"), ("2001:db8::1", None))

    def test_split_host_port_invalid(self) -> None:
        """
        Malformed targets raise L{ValueError}.
        """
        for bad in ("", "host:", "host:70000", "[::1]x", "[nope]:5", "a b", "::g"):
            self.assertRaises(ValueError, split_host_port, bad)

    def test_ip_literals(self) -> None:
        """
        L{is_ip_literal} takes IPv6 without brackets only; L{is_ip_address}
        (a URI host) takes it with them too.
        """
        self.assertTrue(is_ip_literal("192.0.2.1"))
        self.assertTrue(is_ip_literal("2001:db8::1"))
        self.assertFalse(is_ip_literal("[2001:db8::1]"))
        self.assertTrue(is_ip_address("[2001:db8::1]"))
        self.assertFalse(is_ip_literal("example.com"))
        self.assertTrue(is_ipv6_literal("::1"))
        self.assertFalse(is_ipv6_literal("127.0.0.1"))

    def test_hostname(self) -> None:
        """
        RFC 1123 host names, with an optional trailing dot; all-numeric
        names (bad IPv4 addresses) and bad labels are not host names.
        """
        self.assertTrue(is_hostname("srs.example.net"))
        self.assertTrue(is_hostname("srs.example.net."))
        for bad in ("", ".", "256.1.1.1", "-a.example", "a_b.example", "a" * 64 + ".example", "a." * 127 + "a"):
            self.assertFalse(is_hostname(bad), bad)
