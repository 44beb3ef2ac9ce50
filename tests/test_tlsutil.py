# -*- test-case-name: tests.test_tlsutil -*-
"""
Tests for L{aiconnect.tlsutil}.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import stat
import tempfile
from pathlib import Path
from types import SimpleNamespace

from cryptography import x509
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from aiconnect.config import TlsConfig
from aiconnect.errors import AiconnectError, ConfigError
from aiconnect.tlsutil import (
    LOOPBACK_NAMES,
    CertifiedKey,
    client_context_factory,
    ensure_self_signed,
    generate_ca,
    generate_certificate,
    self_signed_certificate,
    server_context_factory,
)


def _write(directory: str, name: str, data: bytes) -> str:
    """
    @return: The path of a new file holding C{data}.
    """
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _server_files(directory: str, pair: CertifiedKey, min_version: str = "1.2") -> TlsConfig:
    """
    @return: A C{[tls]} section presenting C{pair}.
    """
    return TlsConfig(
        certificate=_write(directory, "server.crt", pair.certificate),
        private_key=_write(directory, "server.key", pair.private_key),
        min_version=min_version,
    )


def _memory_handshake(server: SSL.Connection, client: SSL.Connection) -> str | None:
    """
    Run a TLS handshake between two memory-BIO connections.

    @return: L{None} on success, else C{"client: ..."} or C{"server: ..."}.
    """
    server.set_accept_state()
    client.set_connect_state()
    for _ in range(10):
        for name, this, other in (("client", client, server), ("server", server, client)):
            try:
                this.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.Error as e:
                return f"{name}: {e}"
            try:
                other.bio_write(this.bio_read(65536))
            except SSL.WantReadError:
                pass
        if client.get_protocol_version_name() != "Unknown" and server.get_protocol_version_name() != "Unknown":
            try:
                client.do_handshake()
                server.do_handshake()
            except SSL.WantReadError:
                continue
            return None
    return "no progress"


def _legacy_client(max_version: int) -> SSL.Connection:
    """
    @return: A client willing to speak TLS 1.0 up to C{max_version}.
    """
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_VERSION)
    context.set_max_proto_version(max_version)
    context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    return SSL.Connection(context, None)


class GenerateTests(SynchronousTestCase):
    """
    Tests for L{generate_ca}, L{generate_certificate} and L{self_signed_certificate}.
    """

    def test_ca(self) -> None:
        """
        L{generate_ca} makes a self-issued CA certificate with its common name.
        """
        ca = generate_ca("Test CA")
        certificate = x509.load_pem_x509_certificate(ca.certificate)
        self.assertEqual(certificate.subject, certificate.issuer)
        self.assertEqual(
            certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value,
            "Test CA",
        )
        self.assertTrue(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)

    def test_certificate(self) -> None:
        """
        L{generate_certificate} makes a leaf signed by the CA with IP and DNS subject alternative names.
        """
        ca = generate_ca("Test CA")
        leaf = generate_certificate(ca, ["127.0.0.1", "::1", "srs.example.net"])
        certificate = x509.load_pem_x509_certificate(leaf.certificate)
        certificate.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.certificate))
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(
            san.get_values_for_type(x509.IPAddress),
            [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")],
        )
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["srs.example.net"])
        self.assertFalse(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)

    def test_rsa(self) -> None:
        """
        C{key_type="rsa"} makes an RSA key.
        """
        from cryptography.hazmat.primitives.asymmetric import rsa

        leaf = self_signed_certificate(["localhost"], key_type="rsa")
        self.assertIsInstance(x509.load_pem_x509_certificate(leaf.certificate).public_key(), rsa.RSAPublicKey)

    def test_no_hostnames(self) -> None:
        """
        A certificate needs at least one host name.
        """
        self.assertRaises(ValueError, generate_certificate, generate_ca("CA"), [])
        self.assertRaises(ValueError, self_signed_certificate, [])

    def test_private_key_not_in_repr(self) -> None:
        """
        The private key does not appear in C{repr()} of a L{CertifiedKey}.
        """
        pair = self_signed_certificate()
        self.assertNotIn("PRIVATE KEY", repr(pair))


class EnsureSelfSignedTests(SynchronousTestCase):
    """
    Tests for L{ensure_self_signed}.
    """

    def setUp(self) -> None:
        """
        Use a fresh directory.
        """
        self.directory = tempfile.mkdtemp()

    def test_creates(self) -> None:
        """
        Missing files are created with parent directories, a 0600 key, and loopback subject alternative names.
        """
        cert = os.path.join(self.directory, "etc", "tls", "server.crt")
        key = os.path.join(self.directory, "etc", "tls", "server.key")
        self.assertTrue(ensure_self_signed(cert, key))
        self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)
        certificate = x509.load_pem_x509_certificate(Path(cert).read_bytes())
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(
            [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] + san.get_values_for_type(x509.DNSName),
            list(LOOPBACK_NAMES),
        )
        # The pair is usable by the TLS listener.
        server_context_factory(TlsConfig(certificate=cert, private_key=key))

    def test_keeps_existing(self) -> None:
        """
        Existing files are left alone.
        """
        cert = os.path.join(self.directory, "server.crt")
        key = os.path.join(self.directory, "server.key")
        ensure_self_signed(cert, key)
        before = Path(cert).read_bytes(), Path(key).read_bytes()
        self.assertFalse(ensure_self_signed(cert, key))
        self.assertEqual((Path(cert).read_bytes(), Path(key).read_bytes()), before)

    def test_half_pair(self) -> None:
        """
        A certificate without its key is an error, and nothing is written.
        """
        cert = _write(self.directory, "server.crt", b"x")
        key = os.path.join(self.directory, "server.key")
        self.assertRaises(AiconnectError, ensure_self_signed, cert, key)
        self.assertFalse(os.path.exists(key))


class ServerContextTests(SynchronousTestCase):
    """
    Tests for L{server_context_factory}, handshaking over memory BIOs.
    """

    def setUp(self) -> None:
        """
        Write a CA-signed certificate for 127.0.0.1.
        """
        self.directory = tempfile.mkdtemp()
        self.ca = generate_ca("Test CA")
        self.pair = generate_certificate(self.ca, ["127.0.0.1"])

    def _server(self, min_version: str = "1.2") -> SSL.Connection:
        """
        @return: A server-side connection built from L{server_context_factory}.
        """
        options = server_context_factory(_server_files(self.directory, self.pair, min_version))
        return SSL.Connection(options.getContext(), None)

    def test_tls12_accepted(self) -> None:
        """
        A TLS 1.2 client completes the handshake with the default minimum.
        """
        client = _legacy_client(SSL.TLS1_2_VERSION)
        self.assertIsNone(_memory_handshake(self._server(), client))
        self.assertEqual(client.get_protocol_version_name(), "TLSv1.2")

    def test_tls11_refused(self) -> None:
        """
        The listener refuses a client that offers at most TLS 1.1.
        """
        result = _memory_handshake(self._server(), _legacy_client(SSL.TLS1_1_VERSION))
        self.assertIsNotNone(result)
        assert result is not None
        self.assertTrue(result.startswith("server:"), result)
        self.assertIn("unsupported protocol", result)

    def test_min_version_13(self) -> None:
        """
        With C{min_version = "1.3"} a TLS 1.2 client is refused and a TLS 1.3 client accepted.
        """
        result = _memory_handshake(self._server("1.3"), _legacy_client(SSL.TLS1_2_VERSION))
        self.assertIsNotNone(result)
        client = _legacy_client(SSL.TLS1_3_VERSION)
        self.assertIsNone(_memory_handshake(self._server("1.3"), client))
        self.assertEqual(client.get_protocol_version_name(), "TLSv1.3")

    def test_chain(self) -> None:
        """
        Certificates after the leaf in the certificate file are sent as the chain.
        """
        tls = _server_files(self.directory, CertifiedKey(self.pair.certificate + self.ca.certificate, self.pair.private_key))
        options = server_context_factory(tls)
        self.assertEqual(len(options.extraCertChain), 1)

    def test_mismatched_key(self) -> None:
        """
        A key that does not belong to the certificate is an error naming C{tls.private_key}.
        """
        other = generate_certificate(self.ca, ["127.0.0.1"])
        tls = _server_files(self.directory, CertifiedKey(self.pair.certificate, other.private_key))
        error = self.assertRaises(ConfigError, server_context_factory, tls)
        self.assertEqual(error.key, "tls.private_key")

    def test_missing_certificate(self) -> None:
        """
        An unreadable certificate file is an error naming C{tls.certificate}.
        """
        tls = TlsConfig(certificate=os.path.join(self.directory, "nope.crt"), private_key=os.path.join(self.directory, "nope.key"))
        error = self.assertRaises(ConfigError, server_context_factory, tls)
        self.assertEqual(error.key, "tls.certificate")

    def test_not_pem(self) -> None:
        """
        A certificate file without PEM certificate is an error naming C{tls.certificate}.
        """
        tls = _server_files(self.directory, CertifiedKey(b"junk", self.pair.private_key))
        error = self.assertRaises(ConfigError, server_context_factory, tls)
        self.assertEqual(error.key, "tls.certificate")


@implementer(IHandshakeListener)
class _Handshaker(Protocol):
    """
    Fire C{done} with C{True} once the TLS handshake completes, or with the exception when the connection is lost first.
    """

    def __init__(self) -> None:
        """
        Create the two Deferreds.
        """
        self.done: Deferred[object] = Deferred()
        self.lost: Deferred[None] = Deferred()

    def handshakeCompleted(self) -> None:
        """
        Report success and close.
        """
        if not self.done.called:
            self.done.callback(True)
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        """
        Report the reason if the handshake never completed.
        """
        if not self.done.called:
            self.done.callback(reason.value)
        self.lost.callback(None)


class LoopbackTests(TestCase):
    """
    Tests for L{client_context_factory} against a real TLS listener on 127.0.0.1.
    """

    timeout = 10

    def setUp(self) -> None:
        """
        Listen with a CA-signed certificate for 127.0.0.1 on an ephemeral loopback port.
        """
        self.directory = tempfile.mkdtemp()
        self.ca = generate_ca("Test CA")
        self.ca_path = _write(self.directory, "ca.pem", self.ca.certificate)
        self.server_tls = _server_files(self.directory, generate_certificate(self.ca, ["127.0.0.1"]))
        self.server_protocols: list[_Handshaker] = []
        self._listen(self.server_tls)
        self.addCleanup(self._close)

    def _listen(self, tls: TlsConfig) -> None:
        """
        Listen on an ephemeral loopback port with the options for C{tls}.
        """

        def build() -> _Handshaker:
            """
            @return: A new server protocol, remembered for cleanup.
            """
            protocol = _Handshaker()
            self.server_protocols.append(protocol)
            return protocol

        factory = Factory.forProtocol(build)  # type: ignore[arg-type]
        self.port = global_reactor.listenSSL(
            0, factory, server_context_factory(tls), interface="127.0.0.1"
        )

    @inlineCallbacks
    def _close(self):  # type: ignore[no-untyped-def]
        """
        Stop listening and wait until every server-side connection is gone.
        """
        yield self.port.stopListening()
        for protocol in self.server_protocols:
            if not protocol.lost.called:
                protocol.transport.abortConnection()  # type: ignore[union-attr]
            yield protocol.lost

    @inlineCallbacks
    def _connect(self, hostname: str, tls: TlsConfig):  # type: ignore[no-untyped-def]
        """
        Connect to the listener, verifying it as C{hostname}.

        @return: A L{Deferred} firing with C{True} or the exception.
        """
        endpoint = wrapClientTLS(
            client_context_factory(hostname, tls),
            TCP4ClientEndpoint(global_reactor, "127.0.0.1", self.port.getHost().port),
        )
        protocol = _Handshaker()
        yield connectProtocol(endpoint, protocol)
        result = yield protocol.done
        yield protocol.lost
        return result

    @inlineCallbacks
    def test_verifies_right_host(self):  # type: ignore[no-untyped-def]
        """
        A client trusting the CA completes the handshake with the IP address the certificate names.
        """
        result = yield self._connect("127.0.0.1", TlsConfig(certificate="", private_key="", ca_certificates=self.ca_path))
        self.assertIs(result, True)

    @inlineCallbacks
    def test_rejects_wrong_host(self):  # type: ignore[no-untyped-def]
        """
        A client trusting the CA refuses the certificate when it expects another host name.
        """
        result = yield self._connect("srs.example.net", TlsConfig(certificate="", private_key="", ca_certificates=self.ca_path))
        self.assertIsInstance(result, VerificationError)

    @inlineCallbacks
    def test_rejects_untrusted_ca(self):  # type: ignore[no-untyped-def]
        """
        A client trusting another CA refuses the certificate even for the right host.
        """
        other = _write(self.directory, "other-ca.pem", generate_ca("Other CA").certificate)
        result = yield self._connect("127.0.0.1", TlsConfig(certificate="", private_key="", ca_certificates=other))
        self.assertIsInstance(result, SSL.Error)
        self.assertIn("certificate verify failed", str(result))

    @inlineCallbacks
    def test_verify_peer_false(self):  # type: ignore[no-untyped-def]
        """
        With C{verify_peer = false} the client accepts any certificate and host name (insecure).
        """
        result = yield self._connect(
            "srs.example.net", TlsConfig(certificate="", private_key="", verify_peer=False)
        )
        self.assertIs(result, True)

    @inlineCallbacks
    def test_self_signed_trusted_directly(self):  # type: ignore[no-untyped-def]
        """
        A client listing the self-signed loopback certificate itself as trusted accepts it as localhost.
        """
        yield self.port.stopListening()
        cert = os.path.join(self.directory, "self", "server.crt")
        key = os.path.join(self.directory, "self", "server.key")
        ensure_self_signed(cert, key)
        self._listen(TlsConfig(certificate=cert, private_key=key))
        result = yield self._connect("localhost", TlsConfig(certificate="", private_key="", ca_certificates=cert))
        self.assertIs(result, True)


#: TLS 1.2 CBC suites (MAC-then-encrypt) for RSA and ECDSA certificates.
CBC_SUITES = "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA"


def _python_tls12_client(port: int, ciphers: str) -> object:
    """
    Handshake with Python's C{ssl} module, TLS 1.2 at most, offering only
    C{ciphers} (blocking: run in a thread).

    @return: The negotiated cipher name, or the L{ssl.SSLError}.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(ciphers)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with context.wrap_socket(raw) as tls:
                return tls.cipher()[0]
        except ssl.SSLError as e:
            return e


class CipherTests(TestCase):
    """
    TLS 1.2 is AEAD-only (L{AEAD_CIPHERS}) on the SIP listener and in our
    outbound connections: a peer offering only CBC suites fails the handshake.
    """

    timeout = 15

    def setUp(self) -> None:
        """
        Listen with the SIP server options, RSA and ECDSA certificates.
        """
        self.directory = tempfile.mkdtemp()
        self.ca = generate_ca("Test CA")

    def _listen(self, key_type: str) -> int:
        """
        @return: The port of a listener presenting a C{key_type} certificate.
        """
        pair = generate_certificate(self.ca, ["127.0.0.1"], key_type=key_type)
        port = global_reactor.listenSSL(
            0, Factory.forProtocol(Protocol), server_context_factory(_server_files(self.directory, pair)), interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        return port.getHost().port

    @inlineCallbacks
    def test_server_refuses_cbc(self):  # type: ignore[no-untyped-def]
        """
        A Python C{ssl} client restricted to TLS 1.2 CBC suites cannot
        handshake with the listener (RSA or ECDSA certificate); one offering
        AEAD suites gets an ECDHE AEAD suite.
        """
        for key_type in ("rsa", "ec"):
            port = self._listen(key_type)
            result = yield deferToThread(_python_tls12_client, port, CBC_SUITES)
            self.assertIsInstance(result, ssl.SSLError, key_type)
            result = yield deferToThread(_python_tls12_client, port, "ECDHE+AESGCM:ECDHE+CHACHA20:" + CBC_SUITES)
            self.assertIsInstance(result, str, key_type)
            self.assertTrue(result.startswith("ECDHE-") and ("GCM" in result or "CHACHA20" in result), result)

    def test_client_refuses_cbc(self) -> None:
        """
        Our outbound connections (verifying or not) offer no CBC suite: a
        TLS 1.2 server that accepts only CBC suites cannot handshake with them.
        """
        pair = generate_certificate(self.ca, ["127.0.0.1"], key_type="rsa")
        tls = _server_files(self.directory, pair)
        ca_path = _write(self.directory, "ca.pem", self.ca.certificate)
        for config in (
            TlsConfig(certificate="", private_key="", ca_certificates=ca_path),
            TlsConfig(certificate="", private_key="", verify_peer=False),
        ):
            context = SSL.Context(SSL.TLS_METHOD)
            context.set_max_proto_version(SSL.TLS1_2_VERSION)
            context.set_cipher_list(CBC_SUITES.encode())
            context.use_certificate_file(tls.certificate)
            context.use_privatekey_file(tls.private_key)
            server = SSL.Connection(context, None)
            # What clientConnectionForTLS reads of a TLSMemoryBIOProtocol (ALPN lookup).
            tls_protocol = SimpleNamespace(factory=SimpleNamespace(wrappedFactory=Factory()))
            client = client_context_factory("127.0.0.1", config).clientConnectionForTLS(tls_protocol)
            result = _memory_handshake(server, client)
            self.assertIsNotNone(result)
            self.assertIn("no shared cipher", str(result))
