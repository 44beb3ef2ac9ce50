# -*- test-case-name: tests.sip.test_sdes,tests.media.test_srtp -*-
"""
SDES keys in SDP (RFC 4568): the C{a=crypto} attribute (L{Crypto}), its key
parameters (L{KeyParam}, the one SDES key parser: the SRTP module reads keys
through it) and the crypto suites we implement (L{SUPPORTED_SUITES}).

Keys are never generated here: the SRTP module makes them and hands them in
as L{Crypto} values (L{Crypto.from_key}).  A key never appears in a C{repr}
nor in an error message.  Which offered line an answer takes is the
offer/answer rule L{aiconnect.sip.offer_answer.select_crypto}.

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

from aiconnect.sip.sdp_fields import Attribute, SdpError

__all__ = ["Crypto", "KeyParam", "SUPPORTED_SUITES"]

#: SDES crypto suites the SRTP module implements (RFC 4568 s6.2, RFC 7714
#: s14.2), in our order of preference.
SUPPORTED_SUITES = (
    "AES_CM_128_HMAC_SHA1_80",
    "AES_CM_128_HMAC_SHA1_32",
    "AEAD_AES_128_GCM",
    "AEAD_AES_256_GCM",
)


# RFC 4568 s9.1: key-info for the "inline" method:
#   key-salt ["|" lifetime] ["|" mki ":" mki-length]
_LIFETIME = re.compile(r"(?:2\^)?[0-9]+\Z")
_MKI = re.compile(r"([0-9]{1,128}):([0-9]{1,3})\Z")


@dataclass(frozen=True, slots=True)
class KeyParam:
    """
    One SDES key parameter (RFC 4568 s6.1, s9.1):
    C{inline:<key||salt base64>[|lifetime][|MKI:length]}.

    The key never appears in a C{repr}.

    @ivar key_salt: the concatenated master key and master salt.
    @ivar lifetime: the lifetime as written (C{2^20}, C{1048576}), or C{None}.
    @ivar mki: the master key identifier value, or C{None}.
    @ivar mki_length: its length in octets on the wire, or C{None}.
    """

    key_salt: bytes = field(repr=False)
    lifetime: str | None = None
    mki: int | None = None
    mki_length: int | None = None

    def __repr__(self) -> str:
        return f"KeyParam(key_salt=<{len(self.key_salt)} octets>, lifetime={self.lifetime!r}, mki={self.mki!r})"

    __str__ = __repr__

    @classmethod
    def parse(cls, text: str) -> KeyParam:
        """
        Parse one key parameter: the one SDES key parser (the SRTP module
        reads keys through it).

        The key method is case-insensitive (RFC 5234 s2.3).  The base64
        padding is optional: a key written without any C{=} is padded
        before decoding (some SRCs strip it); a key that carries padding
        must carry the right amount, and only the base64 alphabet is
        accepted (no white space).

        @raise SdpError: for another key method than C{inline}, bad base64,
            an empty key or a bad lifetime or MKI; the message never quotes
            the key.
        """
        method, sep, info = text.strip().partition(":")
        if not sep or method.lower() != "inline":
            raise SdpError("unsupported SDES key method")
        fields = info.split("|")
        encoded = fields[0]
        if "=" not in encoded:
            # Tolerate SRCs that strip the base64 padding.
            encoded += "=" * (-len(encoded) % 4)
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise SdpError("SDES key is not valid base64") from None
        if not key:
            raise SdpError("empty SDES key")
        lifetime: str | None = None
        mki: int | None = None
        mki_length: int | None = None
        rest = fields[1:]
        if len(rest) > 2:
            raise SdpError("malformed SDES key parameter")
        for item in rest:
            m = _MKI.match(item)
            if m is not None and mki is None:
                mki, mki_length = int(m[1]), int(m[2])
            elif _LIFETIME.match(item) and lifetime is None and mki is None:
                lifetime = item
            else:
                raise SdpError("malformed SDES key parameter")
        return cls(key, lifetime, mki, mki_length)

    def text(self) -> str:
        """
        The key parameter as written in an C{a=crypto} line.
        """
        out = "inline:" + base64.b64encode(self.key_salt).decode("ascii")
        if self.lifetime is not None:
            out += "|" + self.lifetime
        if self.mki is not None:
            out += f"|{self.mki}:{self.mki_length}"
        return out


# RFC 4568 s9.1: "a=crypto:" tag 1*WSP crypto-suite 1*WSP key-params
#   *(1*WSP session-param); key-params = key-param *(";" key-param)
_CRYPTO = re.compile(r"([0-9]{1,9})[ \t]+([A-Za-z0-9_]+)[ \t]+(\S+)((?:[ \t]+\S+)*)[ \t]*\Z")


@dataclass(frozen=True, slots=True)
class Crypto:
    """
    One C{a=crypto} attribute (RFC 4568 s9.1).

    The keys never appear in a C{repr}.

    @ivar tag: the decimal tag the answer echoes (RFC 4568 s6.1).
    @ivar suite: the crypto suite, as written (C{AES_CM_128_HMAC_SHA1_80}).
    @ivar keys: one or more key parameters.
    @ivar session_params: session parameters as written
        (C{FEC_ORDER=FEC_SRTP}, C{UNENCRYPTED_SRTCP} ...).
    """

    tag: int
    suite: str
    keys: tuple[KeyParam, ...]
    session_params: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (
            f"Crypto(tag={self.tag!r}, suite={self.suite!r}, keys=<{len(self.keys)}>, "
            f"session_params={self.session_params!r})"
        )

    __str__ = __repr__

    @classmethod
    def parse(cls, value: str) -> Crypto:
        """
        Parse an C{a=crypto} value (with or without the C{crypto:} prefix):
        C{1 AES_CM_128_HMAC_SHA1_80 inline:...|2^20|1:32 [session params]}.

        @raise SdpError: on bad syntax; the message never quotes the key.
        """
        text = value.strip()
        if text.lower().startswith("a=crypto:"):
            text = text[9:]
        elif text.lower().startswith("crypto:"):
            text = text[7:]
        m = _CRYPTO.match(text)
        if m is None:
            raise SdpError("malformed a=crypto attribute")
        keys = tuple(KeyParam.parse(k) for k in m[3].split(";"))
        return cls(int(m[1]), m[2], keys, tuple(m[4].split()))

    @classmethod
    def from_key(cls, tag: int, suite: str, key_salt: bytes, lifetime: str | None = None) -> Crypto:
        """
        An attribute carrying one key of ours (no MKI, no session
        parameters), for an offer or an answer.

        @param tag: the tag (an answer echoes the offer's).
        @param suite: the crypto suite.
        @param key_salt: master key || master salt, from the SRTP module.
        @param lifetime: an optional lifetime to advertise.
        """
        return cls(tag, suite, (KeyParam(key_salt, lifetime),))

    @property
    def key(self) -> bytes:
        """
        The first key's master key || master salt.
        """
        return self.keys[0].key_salt

    @property
    def usable(self) -> bool:
        """
        Whether the SRTP module can use this line: one of
        L{SUPPORTED_SUITES}, a single key without MKI, no session parameters
        (C{pylibsrtp} supports none of these).
        """
        return (
            self.suite in SUPPORTED_SUITES
            and len(self.keys) == 1
            and self.keys[0].mki is None
            and not self.session_params
        )

    def value(self) -> str:
        """
        The attribute value (without C{a=crypto:}).
        """
        words = [str(self.tag), self.suite, ";".join(k.text() for k in self.keys)]
        words.extend(self.session_params)
        return " ".join(words)

    def attribute(self) -> Attribute:
        """
        This value as an L{Attribute}.
        """
        return Attribute("crypto", self.value())
