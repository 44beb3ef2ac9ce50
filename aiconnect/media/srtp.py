# -*- test-case-name: tests.media.test_srtp -*-
"""
SRTP (RFC 3711) with SDES keys (RFC 4568), through libsrtp (C{pylibsrtp}).

Two parts:

  - L{SrtpParams}: one crypto suite and its master key || master salt, as
    carried in an C{a=crypto} line's C{inline:} key parameter.  Fresh keys
    come from the CSPRNG (L{secrets}); L{parse_crypto} and L{format_crypto}
    read and write the attribute value.  The grammar (and its tolerance of
    a stripped base64 padding) is the SDP model's, L{aiconnect.sip.sdp.Crypto}
    and L{aiconnect.sip.sdp.KeyParam}: one parser for both.  A key never
    appears in a C{repr}, a log line or an exception message.
  - L{SrtpContext}: one direction of one stream.  C{protect*} and
    C{unprotect*} never raise: a packet that fails (bad tag, replay, bad
    framing) returns C{None} and is counted in L{SrtpContext.failures} by
    cause, so the relay drops it and the call goes on.

Suites: C{AES_CM_128_HMAC_SHA1_80}, C{AES_CM_128_HMAC_SHA1_32} (RFC 4568
s6.2), and the AEAD suites C{AEAD_AES_128_GCM} / C{AEAD_AES_256_GCM} (RFC
7714 s14.2), which libsrtp provides at no extra cost.  MKIs are not
supported (C{pylibsrtp} cannot configure them): an offer whose key carries
one must be answered with another crypto line or refused.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

import pylibsrtp

from aiconnect.sip.sdp import Crypto, KeyParam, SdpError

__all__ = [
    "CryptoAttribute",
    "SUITES",
    "SrtpContext",
    "SrtpParams",
    "SuiteInfo",
    "decode_key_param",
    "format_crypto",
    "parse_crypto",
]


@dataclass(frozen=True, slots=True)
class SuiteInfo:
    """
    What a crypto suite needs.

    @ivar key_length: master key octets.
    @ivar salt_length: master salt octets.
    @ivar profile: the libsrtp profile constant.
    """

    key_length: int
    salt_length: int
    profile: int


#: The suites we can use, by their RFC 4568 / RFC 7714 names.
SUITES: dict[str, SuiteInfo] = {
    "AES_CM_128_HMAC_SHA1_80": SuiteInfo(16, 14, pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80),
    "AES_CM_128_HMAC_SHA1_32": SuiteInfo(16, 14, pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32),
    "AEAD_AES_128_GCM": SuiteInfo(16, 12, pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM),
    "AEAD_AES_256_GCM": SuiteInfo(32, 12, pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM),
}

def decode_key_param(
    key_param: str,
) -> tuple[bytes, str | None, int | None, int | None]:
    """
    Decode one C{inline:} key parameter of any suite (RFC 4568 s6.1, s9.1),
    with L{KeyParam.parse}.

    @return: C{(key_and_salt, lifetime, mki, mki_length)}; the optional
        parts are C{None} when absent.
    @raise ValueError: on bad syntax or bad base64; the message never quotes
        the key.
    """
    key = _key_param(key_param)
    return key.key_salt, key.lifetime, key.mki, key.mki_length


def _key_param(text: str) -> KeyParam:
    """
    @return: C{text} parsed by L{KeyParam.parse}.
    @raise ValueError: instead of its L{SdpError} (same reason, no key).
    """
    try:
        return KeyParam.parse(text)
    except SdpError as e:
        raise ValueError(e.reason) from None


@dataclass(frozen=True, slots=True)
class SrtpParams:
    """
    An SDES key: a crypto suite and its master key || master salt.

    The C{repr} shows the suite only; the key stays out of logs.

    @ivar suite: a name from L{SUITES}.
    @ivar key: master key followed by master salt.
    @ivar lifetime: the optional lifetime as written (C{"2^31"}); not
        enforced here (libsrtp enforces its own limit).
    @ivar mki: the optional master key identifier value.
    @ivar mki_length: its length in octets on the wire.
    """

    suite: str
    key: bytes = field(repr=False)
    lifetime: str | None = None
    mki: int | None = None
    mki_length: int | None = None

    def __post_init__(self) -> None:
        info = SUITES.get(self.suite)
        if info is None:
            raise ValueError(f"unsupported crypto suite {self.suite!r}")
        if len(self.key) != info.key_length + info.salt_length:
            raise ValueError(
                f"{self.suite} needs {info.key_length + info.salt_length} octets "
                f"of key and salt, got {len(self.key)}"
            )

    def __repr__(self) -> str:
        return f"SrtpParams(suite={self.suite!r}, key=<hidden>)"

    __str__ = __repr__

    @classmethod
    def generate(cls, suite: str = "AES_CM_128_HMAC_SHA1_80") -> SrtpParams:
        """
        A fresh random key for C{suite}, from the CSPRNG (RFC 4568 s8.1
        requires keys that are random and unique per direction).

        @raise ValueError: for an unsupported suite.
        """
        info = SUITES.get(suite)
        if info is None:
            raise ValueError(f"unsupported crypto suite {suite!r}")
        return cls(suite, secrets.token_bytes(info.key_length + info.salt_length))

    @classmethod
    def from_key_param(cls, suite: str, key_param: str) -> SrtpParams:
        """
        Parse one C{inline:} key parameter (RFC 4568 s6.1).

        @raise ValueError: on bad syntax, bad base64, a key of the wrong
            length or an unsupported suite; the message never quotes the key.
        """
        return cls.from_key(suite, _key_param(key_param))

    @classmethod
    def from_key(cls, suite: str, key: KeyParam) -> SrtpParams:
        """
        The parameters of one parsed key parameter of an C{a=crypto} line.

        @raise ValueError: on a key of the wrong length or an unsupported
            suite; the message never quotes the key.
        """
        return cls(suite, key.key_salt, lifetime=key.lifetime, mki=key.mki, mki_length=key.mki_length)

    @property
    def master_key(self) -> bytes:
        """
        The master key part of L{key}.
        """
        return self.key[: SUITES[self.suite].key_length]

    @property
    def master_salt(self) -> bytes:
        """
        The master salt part of L{key}.
        """
        return self.key[SUITES[self.suite].key_length :]

    def key_param(self) -> str:
        """
        The C{inline:} key parameter for an C{a=crypto} line (RFC 4568 s6.1).
        """
        return KeyParam(self.key, self.lifetime, self.mki, self.mki_length).text()


@dataclass(frozen=True, slots=True)
class CryptoAttribute:
    """
    One C{a=crypto} attribute (RFC 4568 s9.1).

    @ivar tag: the decimal tag that the answer echoes.
    @ivar suite: the crypto-suite name, as written.
    @ivar keys: the key parameters, parsed when the suite is one of
        L{SUITES} (otherwise empty, and L{supported} is false; the key
        parameters are still checked, by L{Crypto.parse}).
    @ivar session_params: the session parameters, as written.
    """

    tag: int
    suite: str
    keys: tuple[SrtpParams, ...]
    session_params: tuple[str, ...] = ()

    @property
    def supported(self) -> bool:
        """
        Whether we can use this line: a known suite, one key, no MKI and no
        session parameters (none of which we implement).
        """
        return (
            self.suite in SUITES
            and len(self.keys) == 1
            and self.keys[0].mki is None
            and not self.session_params
        )


def parse_crypto(value: str) -> CryptoAttribute:
    """
    Parse an C{a=crypto} attribute value (with or without the C{a=crypto:}
    prefix): C{1 AES_CM_128_HMAC_SHA1_80 inline:...|2^20|1:32}, with
    L{Crypto.parse}.

    Several keys are separated by C{;} (RFC 4568 s9.1).

    @raise ValueError: on bad syntax, or a bad key for a known suite.
    """
    try:
        crypto = Crypto.parse(value)
    except SdpError as e:
        raise ValueError(e.reason) from None
    keys: tuple[SrtpParams, ...] = ()
    if crypto.suite in SUITES:
        keys = tuple(SrtpParams.from_key(crypto.suite, key) for key in crypto.keys)
    return CryptoAttribute(crypto.tag, crypto.suite, keys, crypto.session_params)


def format_crypto(tag: int, params: SrtpParams) -> str:
    """
    The C{a=crypto} attribute value for one key (without C{a=crypto:}).
    """
    return f"{tag} {params.suite} {params.key_param()}"


# pylibsrtp raises Error(message); map libsrtp's messages to drop causes.
_CAUSES = {
    "authentication failure": "srtp_auth",
    "replay check failed (bad index)": "srtp_replay",
    "replay check failed (index too old)": "srtp_replay",
}
# The same by libsrtp status code (srtp_err_status_t), for the direct path.
_RC_CAUSES = {
    7: "srtp_auth",  # srtp_err_status_auth_fail
    9: "srtp_replay",  # srtp_err_status_replay_fail
    10: "srtp_replay",  # srtp_err_status_replay_old
}
# Room for the SRTP(C) trailer (tag, SRTCP index, MKI) after the packet.
_MAX_PACKET = 1500 - pylibsrtp.SRTP_MAX_SRTCP_TRAILER_LEN


_SHARED: list[Any] = []


def _shared_buffer() -> tuple[Any, Any, Any]:
    if not _SHARED:
        ffi = pylibsrtp.ffi
        buf = ffi.new("char[]", 1500)
        _SHARED.extend((buf, ffi.buffer(buf), ffi.new("int *")))
    return _SHARED[0], _SHARED[1], _SHARED[2]


class _DirectSession:
    """
    A libsrtp session through pylibsrtp's own cffi binding (C{pylibsrtp.lib}
    / C{pylibsrtp.ffi}), run in place in one shared buffer.

    C{pylibsrtp.Session} allocates a length cell and copies through Python
    slices on every call, into a buffer per session; this saves about 0.6
    µs of the 1.7 µs a 172-octet packet costs, and more with many sessions
    (one buffer stays in cache).  If the binding ever changes shape,
    L{SrtpContext} falls back to C{pylibsrtp.Session}.
    """

    __slots__ = ("_srtp", "_key", "_s")

    def __init__(
        self, key: bytes, profile: int, ssrc_type: int, ssrc: int, allow_repeat_tx: bool
    ) -> None:
        ffi, lib = pylibsrtp.ffi, pylibsrtp.lib
        policy = ffi.new("srtp_policy_t *")
        for rc in (
            lib.srtp_crypto_policy_set_from_profile_for_rtp(ffi.addressof(policy.rtp), profile),
            lib.srtp_crypto_policy_set_from_profile_for_rtcp(ffi.addressof(policy.rtcp), profile),
        ):
            if rc:
                raise ValueError("libsrtp rejected the profile")
        self._key = ffi.new("unsigned char[]", key)
        policy.key = self._key
        policy.ssrc.type = ssrc_type
        policy.ssrc.value = ssrc
        policy.allow_repeat_tx = 1 if allow_repeat_tx else 0
        srtp = ffi.new("srtp_t *")
        if lib.srtp_create(srtp, policy):
            raise ValueError("libsrtp could not create the session")
        self._srtp = ffi.gc(srtp, lambda x: lib.srtp_dealloc(x[0]))
        self._s = srtp[0]

    def runner(self, func: Any, failures: dict[str, int]) -> Callable[[bytes], bytes | None]:
        """
        A function running one libsrtp call (C{srtp_protect}, ...) on a
        packet: the output packet, or C{None} with the failure counted.

        Everything it needs arrives as default arguments: one tuple, where
        closure cells would be one object each to fetch (from memory, with
        hundreds of streams taking turns) on every packet.  C{_keep} holds
        the session, and so the libsrtp context behind the raw pointer
        C{s}, for as long as the function lives.
        """
        buf, mem, length = _shared_buffer()

        def run(
            packet: bytes,
            s: Any = self._s,
            func: Any = func,
            buf: Any = buf,
            mem: Any = mem,
            length: Any = length,
            limit: int = _MAX_PACKET,
            failures: dict[str, int] = failures,
            _keep: _DirectSession = self,
        ) -> bytes | None:
            n = len(packet)
            if n > limit:
                failures["srtp_error"] = failures.get("srtp_error", 0) + 1
                return None
            mem[:n] = packet
            length[0] = n
            rc = func(s, buf, length)
            if rc:
                cause = _RC_CAUSES.get(rc, "srtp_error")
                failures[cause] = failures.get(cause, 0) + 1
                return None
            return mem[: length[0]]  # type: ignore[no-any-return]

        return run


class SrtpContext:
    """
    One direction of SRTP/SRTCP for one stream.

    Inbound contexts use C{SSRC_ANY_INBOUND}, so an SSRC change (re-INVITE,
    SRC failover) needs no new context; outbound ones C{SSRC_ANY_OUTBOUND},
    or the one SSRC given.  The replay window is libsrtp's default (128).

    Not thread-safe: every context shares one buffer, for the reactor
    thread.

    @ivar failures: drop counts by cause: C{srtp_auth}, C{srtp_replay},
        C{srtp_error} (anything else: too short, too long, ...).
    @ivar protect: RTP -> SRTP; the packet, or C{None} (counted) on failure.
    @ivar unprotect: SRTP -> RTP (authenticate, check replay, decrypt).
    @ivar protect_rtcp: RTCP -> SRTCP.
    @ivar unprotect_rtcp: SRTCP -> RTCP.
    """

    protect: Callable[[bytes], bytes | None]
    unprotect: Callable[[bytes], bytes | None]
    protect_rtcp: Callable[[bytes], bytes | None]
    unprotect_rtcp: Callable[[bytes], bytes | None]

    def __init__(
        self, params: SrtpParams, outbound: bool, direct: bool = True, ssrc: int | None = None
    ) -> None:
        """
        @param params: the key: ours for outbound, the peer's for inbound.
        @param outbound: C{True} to protect, C{False} to unprotect.
        @param direct: call libsrtp through the binding with a shared buffer
            (faster); C{False} uses C{pylibsrtp.Session}.
        @param ssrc: for an outbound context, the one SSRC it will protect
            (C{SSRC_SPECIFIC}: libsrtp then keeps one stream instead of a
            template and its clone); packets with another SSRC fail.
        @raise ValueError: for a key with an MKI.
        """
        if params.mki is not None:
            raise ValueError("SRTP keys with an MKI are not supported")
        profile = SUITES[params.suite].profile
        ssrc_type = (
            pylibsrtp.Policy.SSRC_ANY_OUTBOUND if outbound else pylibsrtp.Policy.SSRC_ANY_INBOUND
        )
        if outbound and ssrc is not None:
            ssrc_type = pylibsrtp.Policy.SSRC_SPECIFIC
        self.suite = params.suite
        self.outbound = outbound
        self.failures: dict[str, int] = {}
        # A duplicated inbound packet is relayed as a duplicate: outbound,
        # let libsrtp protect the same index twice instead of failing.
        self._session: Any = None
        if direct:
            try:
                session = _DirectSession(params.key, profile, ssrc_type, ssrc or 0, outbound)
                lib = pylibsrtp.lib
                self.protect = session.runner(lib.srtp_protect, self.failures)
                self.unprotect = session.runner(lib.srtp_unprotect, self.failures)
                self.protect_rtcp = session.runner(lib.srtp_protect_rtcp, self.failures)
                self.unprotect_rtcp = session.runner(lib.srtp_unprotect_rtcp, self.failures)
                self._session = session
                return
            except (AttributeError, TypeError):  # the binding changed: fall back
                pass
        policy = pylibsrtp.Policy(
            key=params.key, ssrc_type=ssrc_type, ssrc_value=ssrc or 0, srtp_profile=profile
        )
        policy.allow_repeat_tx = outbound
        session = pylibsrtp.Session(policy=policy)
        self.protect = self._wrap(session.protect)
        self.unprotect = self._wrap(session.unprotect)
        self.protect_rtcp = self._wrap(session.protect_rtcp)
        self.unprotect_rtcp = self._wrap(session.unprotect_rtcp)
        self._session = session

    def __repr__(self) -> str:
        direction = "outbound" if self.outbound else "inbound"
        return f"<SrtpContext {self.suite} {direction}>"

    def _wrap(self, call: Callable[[bytes], bytes]) -> Callable[[bytes], bytes | None]:
        failures = self.failures

        def run(packet: bytes) -> bytes | None:
            try:
                return call(packet)
            except (pylibsrtp.Error, ValueError, TypeError) as e:
                cause = _CAUSES.get(e.args[0] if e.args else "", "srtp_error")
                failures[cause] = failures.get(cause, 0) + 1
                return None

        return run
