# -*- test-case-name: tests.test_tlsutil -*-
"""
TLS for SIP: certificates and Twisted context factories.

    - L{generate_ca}, L{generate_certificate} and L{self_signed_certificate}
      make PEM certificates with C{cryptography} (tests, labs, and the
      loopback default);
    - L{ensure_self_signed} creates a self-signed loopback pair when the
      configured files do not exist, so the shipped configuration runs with no
      setup;
    - L{server_context_factory} builds the options of the SIP TLS listener;
    - L{client_context_factory} builds the connection creator of an outbound
      TLS connection to a trunk, verifying the peer's certificate against the
      trunk's host name (RFC 5922 via service-identity) with TLS >= 1.2.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from constantly import NamedConstant
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    AcceptableCiphers,
    Certificate,
    CertificateOptions,
    TLSVersion,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from zope.interface import implementer

from aiconnect.config import TlsConfig
from aiconnect.errors import AiconnectError, ConfigError

if TYPE_CHECKING:
    from twisted.internet._sslverify import IOpenSSLTrustRoot

__all__ = [
    "LOOPBACK_NAMES",
    "CertifiedKey",
    "client_context_factory",
    "ensure_self_signed",
    "generate_ca",
    "generate_certificate",
    "self_signed_certificate",
    "server_context_factory",
]

LOOPBACK_NAMES: tuple[str, ...] = ("127.0.0.1", "::1", "localhost")
"""
The subject alternative names of the self-signed default certificate.
"""

_TLS_VERSIONS: dict[str, NamedConstant] = {
    "1.2": TLSVersion.TLSv1_2,
    "1.3": TLSVersion.TLSv1_3,
}

_PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

AEAD_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
"""
The TLS 1.2 cipher suites we offer and accept, as an OpenSSL cipher string:
forward-secret AEAD suites only (no CBC, whose MAC-then-encrypt invites
padding oracles such as Lucky13). TLS 1.3 suites are all AEAD and are not
affected by it.
"""


def _ciphers() -> AcceptableCiphers:
    """
    @return: L{AEAD_CIPHERS} as Twisted's C{acceptableCiphers}.
    """
    return AcceptableCiphers.fromOpenSSLCipherString(AEAD_CIPHERS)


@dataclass(frozen=True, slots=True)
class CertifiedKey:
    """
    A certificate and its private key, both PEM.

    @ivar certificate: The PEM certificate.
    @ivar private_key: The PEM (PKCS#8, unencrypted) private key; never in
        C{repr()}.
    """

    certificate: bytes
    private_key: bytes = field(repr=False)


# --- generating certificates -------------------------------------------------


def _new_key(key_type: str) -> _PrivateKey:
    """
    @return: A new EC P-256 or RSA 2048 private key.
    """
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"key_type must be 'ec' or 'rsa', not {key_type!r}")


def _key_pem(key: _PrivateKey) -> bytes:
    """
    @return: C{key} as unencrypted PKCS#8 PEM.
    """
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    """
    @return: IP address entries for IP literals, DNS names otherwise.
    """
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name.strip("[]"))))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _validity(
    now: datetime.datetime | None, days: int
) -> tuple[datetime.datetime, datetime.datetime]:
    """
    @return: The not-before and not-after times of a new certificate.
    """
    start = now or datetime.datetime.now(datetime.timezone.utc)
    # An hour of slack for peers whose clocks are behind.
    return start - datetime.timedelta(hours=1), start + datetime.timedelta(days=days)


def _leaf_extensions(
    builder: x509.CertificateBuilder, names: Sequence[str], key_type: str
) -> x509.CertificateBuilder:
    """
    @return: C{builder} with the extensions of a SIP end-entity certificate.
    """
    return (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=key_type == "rsa",
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # SIP TLS endpoints are both servers and clients (RFC 5922 s7).
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(_san(names), critical=False)
    )


def generate_ca(
    common_name: str,
    *,
    days: int = 3650,
    key_type: str = "ec",
    now: datetime.datetime | None = None,
) -> CertifiedKey:
    """
    Create a self-signed certificate authority.

    @param common_name: The CA's subject common name.
    @param days: Validity in days from C{now}.
    @param key_type: C{"ec"} (P-256, the default) or C{"rsa"} (2048 bits).
    @param now: The start of validity (minus an hour); the current time if
        omitted.
    @return: The CA certificate and key.
    """
    key = _new_key(key_type)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    not_before, not_after = _validity(now, days)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertifiedKey(certificate.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def generate_certificate(
    ca: CertifiedKey,
    hostnames: Sequence[str],
    *,
    common_name: str | None = None,
    days: int = 825,
    key_type: str = "ec",
    now: datetime.datetime | None = None,
) -> CertifiedKey:
    """
    Create a certificate signed by C{ca}, usable by TLS servers and clients.

    @param ca: The issuing CA (from L{generate_ca}).
    @param hostnames: The subject alternative names: IP literals become IP
        address entries, anything else DNS names.  At least one.
    @param common_name: The subject common name; the first host name if
        omitted.
    @param days: Validity in days from C{now}.
    @param key_type: C{"ec"} (P-256, the default) or C{"rsa"} (2048 bits).
    @param now: The start of validity (minus an hour); the current time if
        omitted.
    @return: The certificate and its key.
    @raise ValueError: If C{hostnames} is empty.
    """
    if not hostnames:
        raise ValueError("at least one host name is needed")
    ca_certificate = x509.load_pem_x509_certificate(ca.certificate)
    ca_key = serialization.load_pem_private_key(ca.private_key, password=None)
    if not isinstance(ca_key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise ValueError("the CA key must be an EC or RSA key")
    key = _new_key(key_type)
    not_before, not_after = _validity(now, days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name or hostnames[0])]))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    certificate = _leaf_extensions(builder, hostnames, key_type).sign(ca_key, hashes.SHA256())
    return CertifiedKey(certificate.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def self_signed_certificate(
    hostnames: Sequence[str] = LOOPBACK_NAMES,
    *,
    days: int = 825,
    key_type: str = "ec",
    now: datetime.datetime | None = None,
) -> CertifiedKey:
    """
    Create a self-signed end-entity certificate (its own trust anchor: a
    client trusts it by listing the certificate itself in C{ca_certificates}).

    @param hostnames: The subject alternative names (IP literals or DNS
        names); the first one is also the common name.
    @param days: Validity in days from C{now}.
    @param key_type: C{"ec"} (P-256, the default) or C{"rsa"} (2048 bits).
    @param now: The start of validity (minus an hour); the current time if
        omitted.
    @return: The certificate and its key.
    @raise ValueError: If C{hostnames} is empty.
    """
    if not hostnames:
        raise ValueError("at least one host name is needed")
    key = _new_key(key_type)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "AI Connect self-signed"),
            x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0]),
        ]
    )
    not_before, not_after = _validity(now, days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    certificate = _leaf_extensions(builder, hostnames, key_type).sign(key, hashes.SHA256())
    return CertifiedKey(certificate.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def ensure_self_signed(
    cert_path: str | os.PathLike[str],
    key_path: str | os.PathLike[str],
    hostnames: Sequence[str] = LOOPBACK_NAMES,
) -> bool:
    """
    Create a self-signed certificate and key at the given paths unless they
    exist, so the default configuration runs with no setup.

    Parent directories are created; the key file is created with mode 0600
    (and never overwritten).

    @param cert_path: Where the PEM certificate goes.
    @param key_path: Where the PEM private key goes.
    @param hostnames: The subject alternative names; loopback by default
        (127.0.0.1, ::1, localhost).
    @return: C{True} if the files were created, C{False} if both existed.
    @raise AiconnectError: If exactly one of the two files exists (a
        certificate without its key, or the reverse, is never replaced).
    @raise OSError: If the files cannot be written.
    """
    cert_exists = os.path.exists(cert_path)
    key_exists = os.path.exists(key_path)
    if cert_exists and key_exists:
        return False
    if cert_exists or key_exists:
        present, absent = (cert_path, key_path) if cert_exists else (key_path, cert_path)
        raise AiconnectError(
            f"{os.fspath(present)} exists but {os.fspath(absent)} does not; "
            "refusing to replace half of a certificate/key pair"
        )
    pair = self_signed_certificate(hostnames)
    for path in (cert_path, key_path):
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pair.private_key)
    # Write to a temporary name and rename, so a reader never sees half a
    # certificate.
    temporary = f"{os.fspath(cert_path)}.tmp{os.getpid()}"
    with open(temporary, "wb") as f:
        f.write(pair.certificate)
    os.replace(temporary, cert_path)
    return True


# --- loading -----------------------------------------------------------------


def _read(path: str, key: str) -> bytes:
    """
    @return: The contents of C{path}; a L{ConfigError} naming C{key} if unreadable.
    """
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(key, f"cannot read {path}: {e.strerror}") from None


def _load_chain(tls_config: TlsConfig) -> tuple[list[x509.Certificate], _PrivateKey]:
    """
    @return: The configured certificate chain (leaf first) and key.
    @raise ConfigError: If they cannot be read or parsed, or do not match.
    """
    if not tls_config.certificate or not tls_config.private_key:
        raise ConfigError("tls.certificate", "no certificate is configured")
    try:
        chain = x509.load_pem_x509_certificates(_read(tls_config.certificate, "tls.certificate"))
    except ValueError as e:
        raise ConfigError("tls.certificate", f"{tls_config.certificate}: no PEM certificate ({e})") from None
    try:
        pem = _read(tls_config.private_key, "tls.private_key")
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(
            "tls.private_key",
            f"{tls_config.private_key}: not an unencrypted PEM private key ({e})",
        ) from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise ConfigError("tls.private_key", f"{tls_config.private_key}: only EC and RSA keys are supported")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if chain[0].public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise ConfigError(
            "tls.private_key",
            f"{tls_config.private_key} is not the key of {tls_config.certificate}",
        )
    return chain, key


def _options_kwargs(tls_config: TlsConfig) -> dict[str, object]:
    """
    @return: The C{CertificateOptions} arguments presenting our certificate.
    """
    chain, key = _load_chain(tls_config)
    # pyOpenSSL takes the cryptography objects directly (its own X509/PKey
    # wrappers are deprecated); Twisted only passes them through.
    return {"privateKey": key, "certificate": chain[0], "extraCertChain": list(chain[1:])}


def _minimum(tls_config: TlsConfig) -> NamedConstant:
    """
    @return: The L{TLSVersion} of C{tls.min_version}.
    """
    try:
        return _TLS_VERSIONS[tls_config.min_version]
    except KeyError:
        raise ConfigError("tls.min_version", f"{tls_config.min_version!r} is not one of 1.2 | 1.3") from None


def _trust_root(tls_config: TlsConfig) -> IOpenSSLTrustRoot:
    """
    @return: The C{ca_certificates} bundle, or the platform trust store.
    """
    if not tls_config.ca_certificates:
        return platformTrust()
    pem = _read(tls_config.ca_certificates, "tls.ca_certificates")
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as e:
        raise ConfigError(
            "tls.ca_certificates", f"{tls_config.ca_certificates}: no PEM certificate ({e})"
        ) from None
    return trustRootFromCertificates(
        [Certificate(crypto.X509.from_cryptography(c)) for c in certificates]
    )


# --- context factories -------------------------------------------------------


def server_context_factory(tls_config: TlsConfig) -> CertificateOptions:
    """
    Build the TLS options of the SIP TLS listener (C{listenSSL} or an
    C{ssl:} endpoint).

    The listener presents C{tls.certificate} (with any chain certificates
    that follow the leaf in the file) and accepts TLS C{tls.min_version}
    (1.2 by default) or later, TLS 1.2 with L{AEAD_CIPHERS} only.  Client
    certificates are not requested.

    @param tls_config: The C{[tls]} section.
    @return: The options.
    @raise ConfigError: If the certificate or key cannot be loaded or do not
        match.
    """
    return CertificateOptions(
        raiseMinimumTo=_minimum(tls_config), acceptableCiphers=_ciphers(), **_options_kwargs(tls_config)
    )


@implementer(IOpenSSLClientConnectionCreator)
class _UnverifiedClientCreator:
    """
    A client connection creator that does not verify the peer (C{verify_peer
    = false}): insecure, for labs only.  It still sends SNI for DNS names.
    """

    def __init__(self, hostname: str, options: CertificateOptions) -> None:
        """
        @param hostname: The peer's host name or IP literal (SNI for names).
        @param options: The options making the unverified connections.
        """
        self._options = options
        self._server_name: bytes | None
        try:
            ipaddress.ip_address(hostname)
        except ValueError:
            self._server_name = hostname.encode("idna")
        else:
            self._server_name = None

    def clientConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        """
        Create the client-side TLS connection.

        @param tlsProtocol: The C{TLSMemoryBIOProtocol} of the connection.
        @return: The connection, not verifying the peer.
        """
        connection = self._options.clientConnectionForTLS(tlsProtocol)
        if self._server_name is not None:
            connection.set_tlsext_host_name(self._server_name)
        return connection


def client_context_factory(hostname: str, tls_config: TlsConfig) -> IOpenSSLClientConnectionCreator:
    """
    Build the connection creator of an outbound TLS connection (for
    C{connectSSL}, C{SSL4ClientEndpoint} or C{wrapClientTLS}).

    With C{verify_peer} (the default) the peer's certificate must chain to
    C{ca_certificates} (or, when that is C{""}, to the platform trust store)
    and name C{hostname} (RFC 5922 s7.2 via service-identity: a DNS name for
    a host name, an IP address entry for an IP literal).  With C{verify_peer
    = false} nothing is verified: B{insecure}, anyone on the path can
    impersonate the peer.  TLS C{tls.min_version} (1.2 by default) or later,
    TLS 1.2 with L{AEAD_CIPHERS} only.  SNI is sent for host names.  If
    C{tls.certificate} and C{tls.private_key} exist they are presented when
    the server asks for a client certificate.

    @param hostname: The trunk's host name or IP literal (the host of its
        C{target}, IPv6 with or without brackets).
    @param tls_config: The C{[tls]} section.
    @return: The connection creator.
    @raise ConfigError: If a configured file cannot be loaded.
    """
    hostname = hostname.strip("[]").rstrip(".")
    extra: dict[str, object] = {"raiseMinimumTo": _minimum(tls_config), "acceptableCiphers": _ciphers()}
    if (
        tls_config.certificate
        and tls_config.private_key
        and os.path.exists(tls_config.certificate)
        and os.path.exists(tls_config.private_key)
    ):
        extra.update(_options_kwargs(tls_config))
    if not tls_config.verify_peer:
        return _UnverifiedClientCreator(hostname, CertificateOptions(verify=False, **extra))
    return optionsForClientTLS(
        hostname,
        trustRoot=_trust_root(tls_config),
        extraCertificateOptions=extra,
    )

