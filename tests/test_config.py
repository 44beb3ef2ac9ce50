# -*- test-case-name: tests.test_config -*-
"""
Tests for L{aiconnect.config} and L{aiconnect.errors}.
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from aiconnect import config
from aiconnect.config import (
    Config,
    TenantConfig,
    TrunkConfig,
    load,
    load_string,
    normalize_domain,
)
from aiconnect.errors import (
    AiconnectError,
    ConfigError,
    LocalSipError,
    RemoteSipError,
    SipProtocolError,
)

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "etc" / "aiconnect.toml"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"



def _public_key_pem() -> bytes:
    """
    @return: A fresh RSA public key, PEM (C{BEGIN PUBLIC KEY}).
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _trunk(
    match: str = '"aiforward"',
    target: str = '"srs.example.net"',
    extra: str = "",
) -> str:
    """
    @return: One C{[[tenant.trunk]]} table; values are raw TOML.
    """
    lines = ["[[tenant.trunk]]"]
    if match:
        lines.append(f"match = {match}")
    if target:
        lines.append(f"target = {target}")
    if extra:
        lines.append(extra)
    return "\n".join(lines) + "\n"


def _tenant(
    domain: str = '"customer.example.com"',
    callback_url: str = '"http://127.0.0.1:9000"',
    signing_secret: str = f'"{SECRET}"',
    extra: str = "",
    trunks: tuple[str, ...] | None = None,
) -> str:
    """
    @return: One C{[[tenant]]} table with its trunks; values are raw TOML.
    """
    lines = ["[[tenant]]"]
    if domain:
        lines.append(f"domain = {domain}")
    if callback_url:
        lines.append(f"callback_url = {callback_url}")
    if signing_secret:
        lines.append(f"signing_secret = {signing_secret}")
    if extra:
        lines.append(extra)
    text = "\n".join(lines) + "\n"
    for trunk in (_trunk(),) if trunks is None else trunks:
        text += trunk
    return text


# (what is wrong, TOML text, the dotted key the error must name)
BAD_INPUTS: list[tuple[str, str, str]] = [
    ("not TOML", "[sip\n", ""),
    ("unknown top-level key", "colour = 1\n", "colour"),
    ("unknown sip key", "[sip]\nudp_prot = 5060\n", "sip.udp_prot"),
    ("unknown timer", "[sip.timers]\nt3 = 1.0\n", "sip.timers.t3"),
    ("unknown tenant key", _tenant(extra='colour = "red"'), "tenant[0].colour"),
    ("unknown trunk key", _tenant(trunks=(_trunk(extra='proto = "tls"'),)), "tenant[0].trunk[0].proto"),
    ("section not a table", "sip = 5\n", "sip"),
    ("port too large", "[sip]\nudp_port = 70000\n", "sip.udp_port"),
    ("negative port", "[sip]\ntcp_port = -1\n", "sip.tcp_port"),
    ("port as string", '[sip]\nudp_port = "5060"\n', "sip.udp_port"),
    ("port as boolean", "[sip]\ntls_port = true\n", "sip.tls_port"),
    ("port as float", "[api]\nport = 8080.0\n", "api.port"),
    ("bind host not an IP", '[sip]\nhost = "localhost"\n', "sip.host"),
    ("bad advertised address", '[sip]\npublic_address = "bad host!"\n', "sip.public_address"),
    ("tiny max_message_size", "[sip]\nmax_message_size = 100\n", "sip.max_message_size"),
    ("t1 zero", "[sip.timers]\nt1 = 0\n", "sip.timers.t1"),
    ("t2 below t1", "[sip.timers]\nt1 = 2.0\nt2 = 1.0\n", "sip.timers.t2"),
    ("tls port equals tcp port", "[sip]\ntcp_port = 5061\ntls_port = 5061\n", "sip.tls_port"),
    ("api port equals sip tcp port", "[api]\nport = 5060\n", "api.port"),
    ("odd port_min", "[rtp]\nport_min = 20001\n", "rtp.port_min"),
    ("port_min above port_max", "[rtp]\nport_min = 30000\nport_max = 20000\n", "rtp.port_max"),
    ("no RTP/RTCP pair", "[rtp]\nport_min = 20000\nport_max = 20000\n", "rtp.port_max"),
    ("port_min zero", "[rtp]\nport_min = 0\n", "rtp.port_min"),
    ("port_max too large", "[rtp]\nport_max = 65536\n", "rtp.port_max"),
    ("RTP range holds the SIP UDP port", "[rtp]\nport_min = 5000\nport_max = 6000\n", "rtp.port_min"),
    ("negative media_timeout", "[rtp]\nmedia_timeout = -1\n", "rtp.media_timeout"),
    ("infinite media_timeout", "[rtp]\nmedia_timeout = inf\n", "rtp.media_timeout"),
    ("latch not boolean", '[rtp]\nlatch = "yes"\n', "rtp.latch"),
    ("rtp host not an IP", '[rtp]\nhost = "rtp.example.com"\n', "rtp.host"),
    ("api port too large", "[api]\nport = 65536\n", "api.port"),
    ("nameserver not an IP", '[dns]\nnameservers = ["ns.example.com"]\n', "dns.nameservers[0]"),
    ("second nameserver bad", '[dns]\nnameservers = ["192.0.2.53", 53]\n', "dns.nameservers[1]"),
    ("nameservers not an array", '[dns]\nnameservers = "192.0.2.53"\n', "dns.nameservers"),
    ("dns port zero", "[dns]\nport = 0\n", "dns.port"),
    ("empty database", '[events]\ndatabase = ""\n', "events.database"),
    ("retry_for zero", "[events]\nretry_for = 0\n", "events.retry_for"),
    ("retry_for string", '[events]\nretry_for = "1d"\n', "events.retry_for"),
    ("verify_peer string", '[tls]\nverify_peer = "yes"\n', "tls.verify_peer"),
    ("TLS 1.1", '[tls]\nmin_version = "1.1"\n', "tls.min_version"),
    ("missing CA bundle", '[tls]\nca_certificates = "no/such/bundle.pem"\n', "tls.ca_certificates"),
    ("certificate without key", '[tls]\nprivate_key = ""\n', "tls.private_key"),
    ("no certificate with TLS on", '[tls]\ncertificate = ""\nprivate_key = ""\n', "tls.certificate"),
    ("log format", '[log]\nformat = "xml"\n', "log.format"),
    ("log level", '[log]\nlevel = "loud"\n', "log.level"),
    ("tenant as a single table", '[tenant]\ndomain = "a.example.com"\n', "tenant"),
    ("trunk as a single table", _tenant(trunks=('[tenant.trunk]\nmatch = "a"\ntarget = "b.example.com"\n',)), "tenant[0].trunk"),
    ("tenant without domain", _tenant(domain=""), "tenant[0].domain"),
    ("bad tenant domain", _tenant(domain='"bad domain"'), "tenant[0].domain"),
    ("tenant domain not a string", _tenant(domain="42"), "tenant[0].domain"),
    ("tenant without callback_url", _tenant(callback_url=""), "tenant[0].callback_url"),
    ("callback_url ftp", _tenant(callback_url='"ftp://127.0.0.1/"'), "tenant[0].callback_url"),
    ("callback_url not a URL", _tenant(callback_url='"not a url"'), "tenant[0].callback_url"),
    ("callback_url without host", _tenant(callback_url='"http://"'), "tenant[0].callback_url"),
    ("callback_url bad port", _tenant(callback_url='"http://127.0.0.1:99999"'), "tenant[0].callback_url"),
    ("callback_url with credentials", _tenant(callback_url='"http://u:p@127.0.0.1"'), "tenant[0].callback_url"),
    ("callback_url with query", _tenant(callback_url='"http://127.0.0.1/?a=1"'), "tenant[0].callback_url"),
    ("callback_timeout zero", _tenant(extra="callback_timeout = 0"), "tenant[0].callback_timeout"),
    ("tenant without signing_secret", _tenant(signing_secret=""), "tenant[0].signing_secret"),
    ("signing_secret without prefix", _tenant(signing_secret='"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"'), "tenant[0].signing_secret"),
    ("signing_secret not base64", _tenant(signing_secret='"whsec_!!!not-base64!!!"'), "tenant[0].signing_secret"),
    ("signing_secret empty key", _tenant(signing_secret='"whsec_"'), "tenant[0].signing_secret"),
    ("empty api token", _tenant(extra='api_tokens = ["ok", ""]'), "tenant[0].api_tokens[1]"),
    ("api_tokens not an array", _tenant(extra='api_tokens = "tok"'), "tenant[0].api_tokens"),
    ("bad CIDR", _tenant(extra='allowed_sources = ["10.0.0.0/33"]'), "tenant[0].allowed_sources[0]"),
    ("CIDR with host bits", _tenant(extra='allowed_sources = ["192.0.2.0/24", "10.1.2.3/8"]'), "tenant[0].allowed_sources[1]"),
    ("CIDR garbage", _tenant(extra='allowed_sources = ["office"]'), "tenant[0].allowed_sources[0]"),
    ("missing_metadata value", _tenant(extra='missing_metadata = "maybe"'), "tenant[0].missing_metadata"),
    ("non_siprec value", _tenant(extra='non_siprec = "drop"'), "tenant[0].non_siprec"),
    ("tenant max_sessions", _tenant(extra="max_sessions = -1"), "tenant[0].max_sessions"),
    ("zero streams", "[limits]\nmax_streams_per_call = 0\n", "limits.max_streams_per_call"),
    ("stream buffer too long", "[streams]\nmax_buffer = 61\n", "streams.max_buffer"),
    ("zero stream buffer", "[streams]\nmax_buffer = 0\n", "streams.max_buffer"),
    ("negative reconnect", "[streams]\nreconnect_for = -1\n", "streams.reconnect_for"),
    ("unknown streams key", "[streams]\nbuffer = 1\n", "streams.buffer"),
    ("empty recording directory", '[recording]\ndirectory = ""\n', "recording.directory"),
    ("keep not a boolean", '[recording]\nkeep_after_upload = "no"\n', "recording.keep_after_upload"),
    ("zero upload timeout", "[recording]\nupload_timeout = 0\n", "recording.upload_timeout"),
    ("zero connections", "[limits]\nmax_connections = 0\n", "limits.max_connections"),
    ("zero handshake", "[limits]\ntls_handshake_timeout = 0\n", "limits.tls_handshake_timeout"),
    ("unknown limit", "[limits]\nmax_calls = 3\n", "limits.max_calls"),
    ("missing jwt key file", _tenant(extra='jwt_public_key = "no/such/key.pem"'), "tenant[0].jwt_public_key"),
    (
        "duplicate tenant domain",
        _tenant() + _tenant(domain='"Customer.Example.COM."'),
        "tenant[1].domain",
    ),
    (
        "API token shared between tenants",
        _tenant(extra='api_tokens = ["a"]') + _tenant(domain='"other.example.com"', extra='api_tokens = ["b", "a"]'),
        "tenant[1].api_tokens[1]",
    ),
    ("bad transport", _tenant(trunks=(_trunk(extra='transport = "sctp"'),)), "tenant[0].trunk[0].transport"),
    (
        "bad transport in second trunk",
        _tenant(trunks=(_trunk(), _trunk(match='"other"', extra='transport = "TLS1"'))),
        "tenant[0].trunk[1].transport",
    ),
    ("trunk without target", _tenant(trunks=(_trunk(target=""),)), "tenant[0].trunk[0].target"),
    ("trunk without match", _tenant(trunks=(_trunk(match=""),)), "tenant[0].trunk[0].match"),
    ("target port zero", _tenant(trunks=(_trunk(target='"srs.example.net:0"'),)), "tenant[0].trunk[0].target"),
    ("target port text", _tenant(trunks=(_trunk(target='"srs.example.net:sip"'),)), "tenant[0].trunk[0].target"),
    ("target bad host", _tenant(trunks=(_trunk(target='"srs example"'),)), "tenant[0].trunk[0].target"),
    ("target unbalanced bracket", _tenant(trunks=(_trunk(target='"[2001:db8::1:5061"'),)), "tenant[0].trunk[0].target"),
    ("target bad IPv4", _tenant(trunks=(_trunk(target='"256.1.1.1"'),)), "tenant[0].trunk[0].target"),
    ("match with a space", _tenant(trunks=(_trunk(match='"ai forward"'),)), "tenant[0].trunk[0].match"),
    (
        "duplicate trunk match",
        _tenant(trunks=(_trunk(), _trunk(target='"srs2.example.net"'))),
        "tenant[0].trunk[1].match",
    ),
    (
        "password without username",
        _tenant(trunks=(_trunk(extra='password = "pw"'),)),
        "tenant[0].trunk[0].username",
    ),
    ("username not a string", _tenant(trunks=(_trunk(extra="username = 1"),)), "tenant[0].trunk[0].username"),
]


class ShippedConfigTests(SynchronousTestCase):
    """
    Tests for the shipped C{etc/aiconnect.toml}.
    """

    def setUp(self) -> None:
        """
        Work in an empty directory, so relative paths resolve there.
        """
        self.cwd = os.getcwd()
        self.directory = tempfile.mkdtemp()
        os.chdir(self.directory)
        self.addCleanup(os.chdir, self.cwd)

    def test_loads(self) -> None:
        """
        The shipped configuration loads with no other setup and holds the values of SPEC section 7.
        """
        cfg = load(SHIPPED)
        self.assertEqual(cfg.sip.host, "127.0.0.1")
        self.assertEqual(cfg.sip.public_address, "127.0.0.1")
        self.assertEqual(cfg.sip.private_address, "127.0.0.1")
        self.assertEqual((cfg.sip.udp_port, cfg.sip.tcp_port, cfg.sip.tls_port), (5060, 5060, 5061))
        self.assertEqual((cfg.api.host, cfg.api.port), ("127.0.0.1", 8080))
        self.assertEqual((cfg.rtp.host, cfg.rtp.port_min, cfg.rtp.port_max), ("127.0.0.1", 20000, 29999))
        self.assertEqual(cfg.dns.nameservers, ())
        self.assertEqual(cfg.dns.port, 53)
        self.assertEqual(cfg.events.retry_for, 86400.0)
        self.assertTrue(cfg.tls.verify_peer)
        self.assertEqual(cfg.tls.ca_certificates, "")
        [tenant] = cfg.tenants
        self.assertEqual(tenant.domain, "customer.example.com")
        self.assertEqual(tenant.callback_url, "http://127.0.0.1:9000")
        self.assertEqual(tenant.callback_timeout, 5.0)
        self.assertEqual(tenant.api_tokens, ("change-me",))
        self.assertEqual(tenant.jwt_public_key, "")
        self.assertEqual(tenant.allowed_sources, ())
        self.assertEqual(
            tenant.trunks,
            (TrunkConfig(match="aiforward", target="srs.example.net", transport="tls"),),
        )

    def test_relative_paths_resolve_against_working_directory(self) -> None:
        """
        Relative file paths in the shipped configuration become absolute paths under the current working directory.
        """
        cfg = load(SHIPPED)
        here = os.getcwd()
        self.assertEqual(cfg.events.database, os.path.join(here, "var", "aiconnect.sqlite3"))
        self.assertEqual(cfg.tls.certificate, os.path.join(here, "etc", "tls", "server.crt"))
        self.assertEqual(cfg.tls.private_key, os.path.join(here, "etc", "tls", "server.key"))

    def test_documented_keys_match_shipped_keys(self) -> None:
        """
        Every key and table of the shipped file is named in docs/configuration.md.
        """
        import tomllib

        document = tomllib.loads(SHIPPED.read_text("utf-8"))
        docs = (ROOT / "docs" / "configuration.md").read_text("utf-8")
        missing = []

        def walk(table: dict[str, object], path: str) -> None:
            """
            Record the keys and tables under C{path} that the docs do not name.
            """
            for key, value in table.items():
                dotted = f"{path}.{key}" if path else key
                if isinstance(value, dict):
                    if f"`[{dotted}]`" not in docs:
                        missing.append(dotted)
                    walk(value, dotted)
                elif isinstance(value, list) and value and isinstance(value[0], dict):
                    if f"`[[{dotted}]]`" not in docs:
                        missing.append(dotted)
                    for row in value:
                        walk(row, dotted)
                elif f"| `{key}` |" not in docs:
                    missing.append(dotted)

        walk(document, "")
        self.assertEqual(missing, [])

    def test_every_field_documented(self) -> None:
        """
        Every configuration dataclass field has a row in docs/configuration.md.
        """
        import dataclasses

        docs = (ROOT / "docs" / "configuration.md").read_text("utf-8")
        nested = {"timers", "trunks"}
        missing = []
        for cls in (
            config.SipConfig,
            config.TimerConfig,
            config.TlsConfig,
            config.RtpConfig,
            config.ApiConfig,
            config.DnsConfig,
            config.EventsConfig,
            config.LogConfig,
            config.LimitsConfig,
            config.TenantConfig,
            config.TrunkConfig,
        ):
            for f in dataclasses.fields(cls):
                if f.name not in nested and f"| `{f.name}` |" not in docs:
                    missing.append(f"{cls.__name__}.{f.name}")
        self.assertEqual(missing, [])

    def test_defaults_match_shipped(self) -> None:
        """
        The dataclass defaults equal the shipped configuration's sections (apart from tenants).
        """
        cfg = load(SHIPPED)
        defaults = load_string("")
        self.assertEqual(cfg.sip, defaults.sip)
        self.assertEqual(cfg.tls, defaults.tls)
        self.assertEqual(cfg.rtp, defaults.rtp)
        self.assertEqual(cfg.api, defaults.api)
        self.assertEqual(cfg.dns, defaults.dns)
        self.assertEqual(cfg.events, defaults.events)
        self.assertEqual(cfg.log, defaults.log)
        self.assertEqual(cfg.limits, defaults.limits)
        self.assertEqual(defaults.tenants, ())


FULL = f"""
[sip]
host = "0.0.0.0"
public_address = "sbc.example.com"
private_address = "10.0.0.5"
udp_port = 5070
tcp_port = 0
tls_port = 5071
max_message_size = 131072

[sip.timers]
t1 = 1
t2 = 8.0
t4 = 10.5

[tls]
certificate = "certs/server.crt"
private_key = "certs/server.key"
verify_peer = false
min_version = "1.3"

[rtp]
host = "::"
port_min = 40000
port_max = 40099
media_timeout = 0
latch = true

[api]
host = "::1"
port = 0

[dns]
nameservers = ["192.0.2.53", "2001:db8::53"]
port = 5353

[events]
database = ":memory:"
retry_for = 60

[log]
format = "json"
level = "debug"

[streams]
max_buffer = 1.5
reconnect_for = 0
connect_timeout = 3

[recording]
directory = "rec"
keep_after_upload = false
upload_timeout = 5

[limits]
max_streams_per_call = 2
max_forwards_per_call = 3
max_outputs_per_call = 5
max_sessions = 100
invite_rate = 0
invite_rate_answers = 3
max_unconfirmed_per_source = 9
max_connections = 64
tls_handshake_timeout = 2.5
header_timeout = 4
idle_timeout = 60

[[tenant]]
domain = "Customer.Example.com"
callback_url = "https://app.example.com:8443/hooks/"
callback_timeout = 2
api_tokens = ["tok-1", "tok-2"]
signing_secret = "{SECRET}"
allowed_sources = ["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"]
missing_metadata = "reject"
non_siprec = "accept"
max_sessions = 7

  [[tenant.trunk]]
  match = "aiforward"
  target = "srs.example.net"
  transport = "tls"
  username = "rec"
  password = "hunter2"

  [[tenant.trunk]]
  match = "archive"
  target = "[2001:db8::10]:5080"
  transport = "tcp"

[[tenant]]
domain = "192.0.2.1"
callback_url = "http://127.0.0.1:9001"
signing_secret = "whsec_dGVzdA=="
"""


class LoadTests(SynchronousTestCase):
    """
    Tests for L{load_string} and L{load} on valid input.
    """

    def setUp(self) -> None:
        """
        Work in an empty directory, so relative paths resolve there.
        """
        self.cwd = os.getcwd()
        self.directory = tempfile.mkdtemp()
        os.chdir(self.directory)
        self.addCleanup(os.chdir, self.cwd)
        self.cfg = load_string(FULL)

    def test_sip(self) -> None:
        """
        Every C{[sip]} and C{[sip.timers]} key is read with its type; integer timers become floats.
        """
        sip = self.cfg.sip
        self.assertEqual(
            (sip.host, sip.public_address, sip.private_address),
            ("0.0.0.0", "sbc.example.com", "10.0.0.5"),
        )
        self.assertEqual((sip.udp_port, sip.tcp_port, sip.tls_port), (5070, 0, 5071))
        self.assertEqual(sip.max_message_size, 131072)
        self.assertEqual((sip.timers.t1, sip.timers.t2, sip.timers.t4), (1.0, 8.0, 10.5))
        self.assertIsInstance(sip.timers.t1, float)

    def test_tls(self) -> None:
        """
        C{[tls]} paths are resolved against the working directory and the other keys keep their types.
        """
        tls = self.cfg.tls
        self.assertEqual(tls.certificate, os.path.join(os.getcwd(), "certs", "server.crt"))
        self.assertEqual(tls.private_key, os.path.join(os.getcwd(), "certs", "server.key"))
        self.assertEqual(tls.ca_certificates, "")
        self.assertIs(tls.verify_peer, False)
        self.assertEqual(tls.min_version, "1.3")

    def test_rtp_api_dns_events_log(self) -> None:
        """
        C{[rtp]}, C{[api]}, C{[dns]}, C{[events]} and C{[log]} are read with their types.
        """
        cfg = self.cfg
        self.assertEqual((cfg.rtp.host, cfg.rtp.port_min, cfg.rtp.port_max), ("::", 40000, 40099))
        self.assertEqual(cfg.rtp.media_timeout, 0.0)
        self.assertIs(cfg.rtp.latch, True)
        self.assertEqual((cfg.api.host, cfg.api.port), ("::1", 0))
        self.assertEqual(cfg.dns.nameservers, ("192.0.2.53", "2001:db8::53"))
        self.assertEqual(cfg.dns.port, 5353)
        self.assertEqual(cfg.events.database, ":memory:")
        self.assertEqual(cfg.events.retry_for, 60.0)
        self.assertIsInstance(cfg.events.retry_for, float)
        self.assertEqual((cfg.log.format, cfg.log.level), ("json", "debug"))

    def test_limits(self) -> None:
        """
        C{[limits]} is read with its types; a tenant's C{max_sessions} overrides the default.
        """
        limits = self.cfg.limits
        self.assertEqual(
            (limits.max_streams_per_call, limits.max_forwards_per_call, limits.max_outputs_per_call),
            (2, 3, 5),
        )
        self.assertEqual((limits.max_sessions, limits.invite_rate, limits.invite_rate_answers), (100, 0.0, 3))
        self.assertEqual(limits.max_unconfirmed_per_source, 9)
        self.assertEqual(limits.max_connections, 64)
        self.assertEqual(
            (limits.tls_handshake_timeout, limits.header_timeout, limits.idle_timeout), (2.5, 4.0, 60.0)
        )
        self.assertEqual(self.cfg.max_sessions_for(self.cfg.tenants[0]), 7)
        self.assertEqual(self.cfg.max_sessions_for(self.cfg.tenants[1]), 100)

    def test_streams_and_recording(self) -> None:
        """
        C{[streams]} and C{[recording]} are read with their types; the
        directory resolves against the working directory.
        """
        streams, recording = self.cfg.streams, self.cfg.recording
        self.assertEqual((streams.max_buffer, streams.reconnect_for, streams.connect_timeout), (1.5, 0.0, 3.0))
        self.assertEqual((recording.keep_after_upload, recording.upload_timeout), (False, 5.0))
        self.assertEqual(recording.directory, os.path.abspath("rec"))

    def test_tenant(self) -> None:
        """
        C{[[tenant]]} keys are read, the domain lower-cased, the callback URL stripped of its trailing slash and the networks parsed.
        """
        tenant = self.cfg.tenants[0]
        self.assertEqual(tenant.domain, "customer.example.com")
        self.assertEqual(tenant.callback_url, "https://app.example.com:8443/hooks")
        self.assertEqual(tenant.callback_timeout, 2.0)
        self.assertEqual(tenant.api_tokens, ("tok-1", "tok-2"))
        self.assertEqual(tenant.signing_secret, SECRET)
        self.assertEqual(
            tenant.allowed_sources,
            (
                ipaddress.ip_network("192.0.2.0/24"),
                ipaddress.ip_network("2001:db8::/32"),
                ipaddress.ip_network("198.51.100.7/32"),
            ),
        )
        self.assertEqual((tenant.missing_metadata, tenant.non_siprec), ("reject", "accept"))

    def test_tenant_defaults(self) -> None:
        """
        Optional tenant keys take their defaults.
        """
        tenant = self.cfg.tenants[1]
        self.assertEqual(tenant.domain, "192.0.2.1")
        self.assertEqual(tenant.callback_timeout, 5.0)
        self.assertEqual(tenant.api_tokens, ())
        self.assertEqual(tenant.jwt_public_key, "")
        self.assertEqual(tenant.allowed_sources, ())
        self.assertEqual(tenant.trunks, ())
        self.assertEqual((tenant.missing_metadata, tenant.non_siprec), ("accept", "reject"))

    def test_trunks(self) -> None:
        """
        C{[[tenant.trunk]]} entries are read in order, with host and port split from the target.
        """
        first, second = self.cfg.tenants[0].trunks
        self.assertEqual(
            first,
            TrunkConfig(
                match="aiforward",
                target="srs.example.net",
                transport="tls",
                username="rec",
                password="hunter2",
            ),
        )
        self.assertEqual((first.host, first.port), ("srs.example.net", None))
        self.assertEqual((second.match, second.transport, second.username), ("archive", "tcp", ""))
        self.assertEqual((second.host, second.port), ("2001:db8::10", 5080))

    def test_signing_key(self) -> None:
        """
        L{TenantConfig.signing_key} is the decoded key of the C{whsec_} secret, with or without base64 padding.
        """
        self.assertEqual(self.cfg.tenants[1].signing_key, b"test")
        self.assertEqual(len(self.cfg.tenants[0].signing_key), 24)

    def test_tenant_for_domain(self) -> None:
        """
        L{Config.tenant_for_domain} ignores case and a trailing dot, and returns L{None} for an unknown domain.
        """
        tenant = self.cfg.tenants[0]
        self.assertIs(self.cfg.tenant_for_domain("customer.example.com"), tenant)
        self.assertIs(self.cfg.tenant_for_domain("CUSTOMER.Example.COM."), tenant)
        self.assertIs(self.cfg.tenant_for_domain("192.0.2.1"), self.cfg.tenants[1])
        self.assertIsNone(self.cfg.tenant_for_domain("other.example.com"))

    def test_trunk_for(self) -> None:
        """
        L{TenantConfig.trunk_for} finds a trunk by its exact match string.
        """
        tenant = self.cfg.tenants[0]
        self.assertEqual(tenant.trunk_for("archive"), tenant.trunks[1])
        self.assertIsNone(tenant.trunk_for("AIFORWARD"))
        self.assertIsNone(tenant.trunk_for("nothing"))

    def test_allows_source(self) -> None:
        """
        L{TenantConfig.allows_source} admits addresses inside the allowed networks, IPv4-mapped ones included, and any address when none are configured.
        """
        tenant = self.cfg.tenants[0]
        self.assertTrue(tenant.allows_source("192.0.2.77"))
        self.assertTrue(tenant.allows_source("::ffff:192.0.2.77"))
        self.assertTrue(tenant.allows_source("2001:db8::1"))
        self.assertTrue(tenant.allows_source("198.51.100.7"))
        self.assertFalse(tenant.allows_source("198.51.100.8"))
        self.assertFalse(tenant.allows_source("not-an-ip"))
        self.assertTrue(self.cfg.tenants[1].allows_source("203.0.113.9"))

    def test_secrets_not_in_repr(self) -> None:
        """
        Passwords, API tokens and signing secrets never appear in C{repr()} of the configuration.
        """
        text = repr(self.cfg)
        for secret in ("hunter2", "tok-1", "tok-2", SECRET, "whsec_dGVzdA=="):
            self.assertNotIn(secret, text)
        self.assertIn("customer.example.com", text)

    def test_frozen(self) -> None:
        """
        The configuration objects are immutable.
        """
        with self.assertRaises(AttributeError):
            self.cfg.sip.udp_port = 1  # type: ignore[misc]

    def test_empty_document(self) -> None:
        """
        An empty document gives the defaults and no tenant.
        """
        cfg = load_string("")
        self.assertEqual(cfg.sip.udp_port, 5060)
        self.assertEqual(cfg.sip.timers.t1, 0.5)
        self.assertEqual(cfg.tenants, ())
        self.assertEqual(cfg.events.database, os.path.join(os.getcwd(), "var", "aiconnect.sqlite3"))

    def test_jwt_public_key(self) -> None:
        """
        An existing PEM public key file is accepted and its path stored absolute.
        """
        Path("keys").mkdir()
        Path("keys/app.pem").write_bytes(_public_key_pem())
        cfg = load_string(_tenant(extra='jwt_public_key = "keys/app.pem"'))
        self.assertEqual(cfg.tenants[0].jwt_public_key, os.path.join(os.getcwd(), "keys", "app.pem"))

    def test_jwt_public_key_not_pem(self) -> None:
        """
        A JWT key file that holds no PEM public key is an error naming the key.
        """
        Path("app.pem").write_bytes(b"hello")
        error = self.assertRaises(ConfigError, load_string, _tenant(extra='jwt_public_key = "app.pem"'))
        self.assertEqual(error.key, "tenant[0].jwt_public_key")

    def test_tls_files_half_present(self) -> None:
        """
        A certificate file without its key file is an error naming the missing one.
        """
        Path("server.crt").write_bytes(b"x")
        error = self.assertRaises(
            ConfigError,
            load_string,
            '[tls]\ncertificate = "server.crt"\nprivate_key = "server.key"\n',
        )
        self.assertEqual(error.key, "tls.private_key")

    def test_ca_bundle(self) -> None:
        """
        An existing CA bundle path is accepted and stored absolute.
        """
        Path("ca.pem").write_bytes(b"x")
        cfg = load_string('[tls]\nca_certificates = "ca.pem"\n')
        self.assertEqual(cfg.tls.ca_certificates, os.path.join(os.getcwd(), "ca.pem"))

    def test_load_missing_file(self) -> None:
        """
        L{load} of a missing file raises a L{ConfigError} for the whole file.
        """
        error = self.assertRaises(ConfigError, load, "no-such.toml")
        self.assertEqual(error.key, "")
        self.assertTrue(str(error).startswith("config: cannot read no-such.toml"))

    def test_direct_construction(self) -> None:
        """
        The dataclasses can be built directly, required tenant fields by keyword.
        """
        tenant = TenantConfig(domain="a.example.com", callback_url="http://x", signing_secret=SECRET)
        cfg = Config(tenants=(tenant,))
        self.assertIs(cfg.tenant_for_domain("A.example.com"), tenant)


class BadInputTests(SynchronousTestCase):
    """
    Table-driven tests of invalid configurations.
    """

    def setUp(self) -> None:
        """
        Work in an empty directory, so relative paths resolve there.
        """
        self.cwd = os.getcwd()
        self.directory = tempfile.mkdtemp()
        os.chdir(self.directory)
        self.addCleanup(os.chdir, self.cwd)

    def test_bad_inputs_name_their_key(self) -> None:
        """
        Each invalid input raises a one-line L{ConfigError} naming the dotted key at fault.
        """
        problems = []
        for what, text, key in BAD_INPUTS:
            try:
                load_string(text)
            except ConfigError as e:
                line = str(e)
                prefix = f"config: {key}: " if key else "config: "
                if e.key != key or not line.startswith(prefix) or "\n" in line:
                    problems.append(f"{what}: expected key {key!r}, got {line!r}")
            else:
                problems.append(f"{what}: no error")
        self.assertEqual(problems, [])

    def test_valid_base(self) -> None:
        """
        The tenant and trunk the bad inputs start from are valid by themselves.
        """
        cfg = load_string(_tenant())
        self.assertEqual(cfg.tenants[0].trunks[0].match, "aiforward")

    def test_secret_not_in_error(self) -> None:
        """
        A rejected signing secret or API token is not echoed in the error.
        """
        error = self.assertRaises(
            ConfigError, load_string, _tenant(signing_secret='"whsec_sup3r-s3cret!"')
        )
        self.assertNotIn("sup3r", str(error))
        error = self.assertRaises(
            ConfigError,
            load_string,
            _tenant(extra='api_tokens = ["t0ken"]')
            + _tenant(domain='"b.example.com"', extra='api_tokens = ["t0ken"]'),
        )
        self.assertNotIn("t0ken", str(error))


class HelperTests(SynchronousTestCase):
    """
    Tests for L{normalize_domain} and the names re-exported from the SIP layer.
    """

    def test_normalize_domain(self) -> None:
        """
        Domains are lower-cased without trailing dot, IP literals compressed without brackets.
        """
        self.assertEqual(normalize_domain("Example.COM."), "example.com")
        self.assertEqual(normalize_domain("[2001:DB8:0::1]"), "2001:db8::1")
        self.assertEqual(normalize_domain("192.0.2.1"), "192.0.2.1")

    def test_sip_values_reexported(self) -> None:
        """
        The values the SIP layer takes are defined there, once, and the
        configuration re-exports them: C{TimerConfig}, C{split_host_port}.
        """
        from aiconnect.sip import transaction, uri

        self.assertIs(config.TimerConfig, transaction.TimerConfig)
        self.assertIs(config.split_host_port, uri.split_host_port)
        self.assertEqual(load_string("").sip.timers, transaction.TimerConfig())

    def test_connection_limits(self) -> None:
        """
        C{[limits]} hands the SIP transport its four connection keys, and
        their defaults are the transport's own.
        """
        from aiconnect.sip.peer import ConnectionLimits

        self.assertEqual(config.LimitsConfig().connections, ConnectionLimits())
        limits = config.LimitsConfig(max_connections=7, tls_handshake_timeout=1.5, header_timeout=2.5, idle_timeout=3.5)
        self.assertEqual(limits.connections, ConnectionLimits(7, 1.5, 2.5, 3.5))

    def test_module_all(self) -> None:
        """
        Every name in C{__all__} exists.
        """
        for name in config.__all__:
            self.assertTrue(hasattr(config, name), name)


class ErrorTests(SynchronousTestCase):
    """
    Tests for L{aiconnect.errors}.
    """

    def test_config_error_line(self) -> None:
        """
        A L{ConfigError} renders as one line naming the key, and keeps key and message.
        """
        error = ConfigError("tenant[0].trunk[1].transport", "'sctp' is not one of udp | tcp | tls\nmore")
        self.assertEqual(
            str(error),
            "config: tenant[0].trunk[1].transport: 'sctp' is not one of udp | tcp | tls more",
        )
        self.assertEqual(error.key, "tenant[0].trunk[1].transport")
        self.assertIsInstance(error, AiconnectError)

    def test_config_error_whole_file(self) -> None:
        """
        A L{ConfigError} without key renders without the key part.
        """
        self.assertEqual(str(ConfigError("", "invalid TOML")), "config: invalid TOML")

    def test_remote_sip_error(self) -> None:
        """
        L{RemoteSipError} defaults to status hint 400 and keeps an explicit hint.
        """
        self.assertEqual(RemoteSipError("bad Via").status_hint, 400)
        error = RemoteSipError("no such dialog", status_hint=481)
        self.assertEqual((error.status_hint, error.reason), (481, "no such dialog"))
        self.assertEqual(str(error), "481 no such dialog")
        self.assertIsInstance(error, SipProtocolError)
        self.assertIsInstance(error, AiconnectError)

    def test_local_sip_error(self) -> None:
        """
        L{LocalSipError} is a L{SipProtocolError} with status hint 500 by default, and not a L{RemoteSipError}.
        """
        error = LocalSipError("ACK in Trying")
        self.assertEqual(error.status_hint, 500)
        self.assertIsInstance(error, SipProtocolError)
        self.assertNotIsInstance(error, RemoteSipError)
