"""
Tests for L{aiconnect.media.srtp}: SDES key handling (RFC 4568) and SRTP
through libsrtp, checked byte for byte against RFC 3711 / libsrtp vectors
and against an independent AES-CM + HMAC-SHA1 implementation built here on
C{cryptography}.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.media.srtp import (
    SUITES,
    CryptoAttribute,
    SrtpContext,
    SrtpParams,
    decode_key_param,
    format_crypto,
    parse_crypto,
)
from aiconnect.sip.sdp import Crypto, KeyParam, SdpError
from tests.fakes import rtp_packet

DATA = os.path.join(os.path.dirname(__file__), os.pardir, "data", "srtp")
with open(os.path.join(DATA, "srtp-test-vectors.json")) as f:
    VECTORS = json.load(f)
with open(os.path.join(DATA, "rfc4568-crypto-examples.json")) as f:
    EXAMPLES = json.load(f)["examples"]

H = bytes.fromhex


# -- an independent SRTP (RFC 3711 s4.1.1, s4.2, s4.3) ------------------------------


def _aes_cm(key: bytes, iv: int, length: int) -> bytes:
    """
    AES counter-mode keystream from a 128-bit initial counter.
    """
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv.to_bytes(16, "big"))).encryptor()
    return encryptor.update(bytes(length)) + encryptor.finalize()


def _kdf(master_key: bytes, master_salt: bytes, label: int, length: int) -> bytes:
    """
    RFC 3711 s4.3.1 with key_derivation_rate 0: x = (label << 48) XOR
    salt, keystream from x * 2**16.
    """
    x = (label << 48) ^ int.from_bytes(master_salt, "big")
    return _aes_cm(master_key, x << 16, length)


def _srtp_reference(master_key: bytes, master_salt: bytes, packet: bytes, tag_length: int) -> bytes:
    """
    Protect an RTP packet (fixed 12-octet header, ROC 0).
    """
    k_e = _kdf(master_key, master_salt, 0, 16)
    k_a = _kdf(master_key, master_salt, 1, 20)
    k_s = _kdf(master_key, master_salt, 2, 14)
    seq, ssrc = struct.unpack_from("!H", packet, 2)[0], struct.unpack_from("!I", packet, 8)[0]
    iv = (int.from_bytes(k_s, "big") << 16) ^ (ssrc << 64) ^ (seq << 16)
    payload = packet[12:]
    encrypted = bytes(a ^ b for a, b in zip(payload, _aes_cm(k_e, iv, len(payload))))
    authenticated = packet[:12] + encrypted
    tag = hmac.new(k_a, authenticated + bytes(4), hashlib.sha1).digest()[:tag_length]
    return authenticated + tag


class ReferenceImplementationTests(SynchronousTestCase):
    """
    The test's own SRTP reproduces RFC 3711 Appendix B, so it can judge
    libsrtp's output below.
    """

    def test_keystream_b2(self) -> None:
        """
        AES-CM keystream blocks of RFC 3711 B.2.
        """
        b2 = VECTORS["rfc3711"]["aes_cm_B2"]
        key = H(b2["session_key"])
        for counter, block in b2["keystream_blocks"]:
            self.assertEqual(_aes_cm(key, int(counter, 16), 16).hex(), block)

    def test_key_derivation_b3(self) -> None:
        """
        Session keys of RFC 3711 B.3.
        """
        b3 = VECTORS["rfc3711"]["kdf_B3"]
        mk, ms = H(b3["master_key"]), H(b3["master_salt"])
        self.assertEqual(_kdf(mk, ms, 0, 16).hex(), b3["cipher_key"]["value"])
        self.assertEqual(_kdf(mk, ms, 2, 14).hex(), b3["cipher_salt"]["value"])
        self.assertEqual(_kdf(mk, ms, 1, 94).hex(), b3["auth_key"]["value"])

    def test_libsrtp_packet(self) -> None:
        """
        ... and libsrtp's own full-packet vector.
        """
        v = VECTORS["libsrtp_packets"]["vectors"][0]
        out = _srtp_reference(H(v["master_key"]), H(v["master_salt"]), H(v["rtp_plaintext"]), 10)
        self.assertEqual(out.hex(), v["srtp_protected"])


class SrtpContextTests(SynchronousTestCase):
    """
    Protect and unprotect through libsrtp.
    """

    def _params(self, vector: dict[str, str]) -> SrtpParams:
        return SrtpParams.from_key_param(vector["crypto_suite"], vector["sdes_inline"])

    def test_libsrtp_vectors(self) -> None:
        """
        The AES_CM_128_HMAC_SHA1_80 vector, byte for byte, in both
        directions, RTP and RTCP, on both code paths.
        """
        v = VECTORS["libsrtp_packets"]["vectors"][0]
        params = self._params(v)
        self.assertEqual(params.key_param(), v["sdes_inline"])
        for direct in (True, False):
            tx = SrtpContext(params, outbound=True, direct=direct)
            rx = SrtpContext(params, outbound=False, direct=direct)
            self.assertEqual(tx.protect(H(v["rtp_plaintext"])), H(v["srtp_protected"]))
            self.assertEqual(tx.protect_rtcp(H(v["rtcp_plaintext"])), H(v["srtcp_protected"]))
            self.assertEqual(rx.unprotect(H(v["srtp_protected"])), H(v["rtp_plaintext"]))
            self.assertEqual(rx.unprotect_rtcp(H(v["srtcp_protected"])), H(v["rtcp_plaintext"]))
            self.assertEqual(tx.failures, {})
            self.assertEqual(rx.failures, {})

    def test_against_reference(self) -> None:
        """
        Both AES-CM suites match the independent implementation on fresh
        keys and several packets.
        """
        for suite, tag in (("AES_CM_128_HMAC_SHA1_80", 10), ("AES_CM_128_HMAC_SHA1_32", 4)):
            params = SrtpParams.generate(suite)
            tx = SrtpContext(params, outbound=True)
            for seq in (1, 2, 3, 1000):
                packet = rtp_packet(seq, seq * 160, 0x1234ABCD, 8, os.urandom(160))
                expected = _srtp_reference(params.master_key, params.master_salt, packet, tag)
                self.assertEqual(tx.protect(packet), expected, (suite, seq))

    def test_round_trip_every_suite(self) -> None:
        """
        Every suite, GCM included, round-trips RTP and RTCP.
        """
        rtp = rtp_packet(7, 1120, 99, 0, bytes(range(160)))
        rtcp = bytes.fromhex("80c9000100000063")
        for suite in SUITES:
            params = SrtpParams.generate(suite)
            tx, rx = SrtpContext(params, True), SrtpContext(params, False)
            protected = tx.protect(rtp)
            assert protected is not None
            self.assertNotEqual(protected[12:172], rtp[12:])
            self.assertEqual(rx.unprotect(protected), rtp, suite)
            self.assertEqual(rx.unprotect_rtcp(tx.protect_rtcp(rtcp) or b""), rtcp, suite)

    def test_failures_counted(self) -> None:
        """
        A bad tag, a replay and a runt are dropped and counted by cause,
        never raised.
        """
        for direct in (True, False):
            params = SrtpParams.generate()
            tx, rx = SrtpContext(params, True, direct=direct), SrtpContext(params, False, direct=direct)
            packet = tx.protect(rtp_packet(1, 160, 5, 0, bytes(160)))
            assert packet is not None
            tampered = packet[:-1] + bytes([packet[-1] ^ 1])
            self.assertIsNone(rx.unprotect(tampered))
            self.assertIsNotNone(rx.unprotect(packet))
            self.assertIsNone(rx.unprotect(packet))
            self.assertIsNone(rx.unprotect(b"\x80\x00"))
            self.assertIsNone(rx.unprotect(bytes(4000)))
            self.assertIsNone(rx.unprotect_rtcp(b"\x80\xc9\x00\x01\x00\x00\x00\x05"))
            self.assertEqual(rx.failures["srtp_auth"], 1)
            self.assertEqual(rx.failures["srtp_replay"], 1)
            self.assertEqual(rx.failures["srtp_error"] + rx.failures["srtp_auth"], 4)

    def test_wrong_key(self) -> None:
        """
        A packet protected with another key fails authentication.
        """
        tx = SrtpContext(SrtpParams.generate(), True)
        rx = SrtpContext(SrtpParams.generate(), False)
        self.assertIsNone(rx.unprotect(tx.protect(rtp_packet(1, 1, 1, 0, b"")) or b""))
        self.assertEqual(rx.failures, {"srtp_auth": 1})

    def test_mki_refused(self) -> None:
        """
        Keys with an MKI cannot be used (pylibsrtp cannot configure one).
        """
        params = SrtpParams("AES_CM_128_HMAC_SHA1_80", bytes(30), "2^20", 1, 4)
        self.assertRaises(ValueError, SrtpContext, params, True)

    def test_repr_hides_key(self) -> None:
        """
        No repr or str shows the key, in any encoding.
        """
        params = SrtpParams.generate()
        attr = parse_crypto(format_crypto(1, params))
        ctx = SrtpContext(params, True)
        secrets_ = (params.key.hex(), base64.b64encode(params.key).decode(), repr(params.key))
        for text in (repr(params), str(params), repr(attr), str(attr), repr(ctx)):
            for secret in secrets_:
                self.assertNotIn(secret, text)
            self.assertNotIn(params.key_param()[7:20], text)


class SdesTests(SynchronousTestCase):
    """
    a=crypto attributes and inline key parameters (RFC 4568).
    """

    def test_rfc4568_examples(self) -> None:
        """
        Every example of RFC 4568 parses to its listed keys, lifetimes and
        MKIs.
        """
        for example in EXAMPLES:
            text = example["unfolded"]
            if text.startswith("a=crypto:"):
                attr = parse_crypto(text)
                tag, suite = text[len("a=crypto:") :].split()[:2]
                self.assertEqual((attr.tag, attr.suite), (int(tag), suite))
                key_params = text.split()[2].split(";")
                if suite in SUITES:
                    self.assertEqual(len(attr.keys), len(example["keys"]))
                    for params, expected in zip(attr.keys, example["keys"]):
                        self.assertEqual(params.master_key.hex(), expected["master_key"])
                        self.assertEqual(params.master_salt.hex(), expected["master_salt"])
            else:
                key_params = text.split(";")
            self.assertEqual(len(key_params), len(example["keys"]))
            for kp, expected in zip(key_params, example["keys"]):
                key, lifetime, mki, mki_length = decode_key_param(kp)
                self.assertEqual(len(key), expected["decoded_len"])
                self.assertEqual(key[:16].hex(), expected["master_key"])
                self.assertEqual(key[16:].hex(), expected["master_salt"])
                self.assertEqual(lifetime, expected["lifetime"])
                self.assertEqual((mki, mki_length), (expected["mki"], expected["mki_length"]))

    def test_supported(self) -> None:
        """
        Lines with an MKI, several keys, session parameters or an unknown
        suite are parsed but flagged unusable.
        """
        by_text = {e["unfolded"]: parse_crypto(e["unfolded"]) for e in EXAMPLES if e["unfolded"].startswith("a=")}
        self.assertFalse(any(a.supported for a in by_text.values()))  # all carry MKIs
        key = SrtpParams.generate("AES_CM_128_HMAC_SHA1_32")
        plain = parse_crypto(format_crypto(3, key))
        self.assertTrue(plain.supported)
        self.assertEqual(plain, CryptoAttribute(3, "AES_CM_128_HMAC_SHA1_32", (key,)))
        self.assertFalse(parse_crypto(format_crypto(3, key) + " UNENCRYPTED_SRTP").supported)

    def test_generate(self) -> None:
        """
        Fresh keys have the suite's length and differ every time.
        """
        for suite, info in SUITES.items():
            keys = {SrtpParams.generate(suite).key for _ in range(8)}
            self.assertEqual(len(keys), 8)
            self.assertEqual({len(k) for k in keys}, {info.key_length + info.salt_length})
        self.assertRaises(ValueError, SrtpParams.generate, "F8_128_HMAC_SHA1_80")

    def test_round_trip(self) -> None:
        """
        format_crypto then parse_crypto gives the same key, with the
        optional lifetime kept.
        """
        params = SrtpParams.generate()
        self.assertEqual(parse_crypto(format_crypto(1, params)).keys, (params,))
        with_life = SrtpParams(params.suite, params.key, lifetime="2^31")
        self.assertEqual(parse_crypto("a=crypto:" + format_crypto(9, with_life)).keys, (with_life,))

    def test_bad_input(self) -> None:
        """
        Malformed attributes and keys raise ValueError without quoting the
        key.
        """
        good = SrtpParams.generate().key_param()
        for text in (
            "",
            "1 AES_CM_128_HMAC_SHA1_80",
            "x AES_CM_128_HMAC_SHA1_80 " + good,
            "1 AES_CM_128_HMAC_SHA1_80 inline:",
            "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!",
            "1 AES_CM_128_HMAC_SHA1_80 " + good[:-4],  # 27 octets
            "1 AES_CM_128_HMAC_SHA1_80 " + good + "|2^20|x:4",
            "1 AES_CM_128_HMAC_SHA1_80 uri:http://example.com/key",
        ):
            with self.assertRaises(ValueError) as cm:
                parse_crypto(text)
            self.assertNotIn(good[7:20], str(cm.exception))
        self.assertRaises(ValueError, SrtpParams, "AES_CM_128_HMAC_SHA1_80", bytes(29))
        self.assertRaises(ValueError, SrtpParams, "NULL", bytes(30))


#: Key parameters and whether the one SDES parser takes them.  A 28-octet
#: key (AEAD_AES_128_GCM) is written with "==" padding, a 44-octet one
#: (AEAD_AES_256_GCM) with "=".
_KEY_28 = base64.b64encode(bytes(range(28))).decode()
_KEY_44 = base64.b64encode(bytes(range(44))).decode()
_SUITES_BY_LENGTH = {28: "AEAD_AES_128_GCM", 44: "AEAD_AES_256_GCM"}
KEY_PARAMS = (
    ("inline:" + _KEY_28, True),
    ("inline:" + _KEY_44, True),
    ("inline:" + _KEY_28.rstrip("="), True),  # padding stripped: tolerated
    ("inline:" + _KEY_44.rstrip("="), True),
    ("inline:" + _KEY_28[:-1], False),  # half the padding: wrong
    ("inline:" + _KEY_44 + "=", False),  # too much padding
    ("inline:" + _KEY_28 + "|2^20", True),
    ("inline:" + _KEY_28 + "|1048576|1:4", True),
    ("inline:" + _KEY_28 + "|1:4", True),
    ("  inline:" + _KEY_28 + "  ", True),
    ("INLINE:" + _KEY_28, True),  # RFC 5234 literals are case-insensitive
    ("inline:" + _KEY_28 + "|1:4|2^20", False),  # MKI before lifetime
    ("inline:" + _KEY_28 + "|2^20|2^20", False),
    ("inline:" + _KEY_28 + "|1:4|2:4", False),
    ("inline:" + _KEY_28 + "|2^20|1:4|x", False),
    ("inline:" + _KEY_28 + "|x", False),
    ("inline: " + _KEY_28, False),
    ("inline:" + _KEY_28[:10] + " " + _KEY_28[10:], False),
    ("inline:", False),
    ("inline:====", False),
    ("inline:A", False),
    ("inline:!!!!", False),
    ("uri:http://example.com/key", False),
    (_KEY_28, False),
)


class OneSdesParserTests(SynchronousTestCase):
    """
    The SDP model and the SRTP module read SDES keys with one parser: they
    take and refuse the same key parameters and a=crypto values.
    """

    def _sdp(self, text: str) -> tuple[bytes, str | None, int | None, int | None] | None:
        try:
            key = KeyParam.parse(text)
        except SdpError:
            return None
        return key.key_salt, key.lifetime, key.mki, key.mki_length

    def _srtp(self, text: str) -> tuple[bytes, str | None, int | None, int | None] | None:
        try:
            return decode_key_param(text)
        except ValueError:
            return None

    def test_key_params(self) -> None:
        """
        L{KeyParam.parse} (the SDP side) and L{decode_key_param} /
        L{SrtpParams.from_key_param} (the SRTP side) accept the same key
        parameters, with the same key, lifetime and MKI, and refuse the same
        ones: a stripped base64 padding is tolerated, a wrong one is not.
        """
        for text, accepted in KEY_PARAMS:
            sdp, srtp = self._sdp(text), self._srtp(text)
            self.assertEqual(sdp, srtp, text)
            self.assertEqual(sdp is not None, accepted, text)
            if sdp is not None:
                params = SrtpParams.from_key_param(_SUITES_BY_LENGTH[len(sdp[0])], text)
                self.assertEqual((params.key, params.lifetime, params.mki, params.mki_length), sdp)
            else:
                self.assertRaises(ValueError, SrtpParams.from_key_param, "AEAD_AES_128_GCM", text)

    def test_crypto_values(self) -> None:
        """
        L{Crypto.parse} and L{parse_crypto} accept and refuse the same
        a=crypto values, and agree on what they read (for a suite we know,
        L{parse_crypto} checks the key length too).
        """
        for key_param, accepted in KEY_PARAMS:
            values = ["a=crypto:2 F8_128_HMAC_SHA1_80 " + key_param.strip() + " UNENCRYPTED_SRTP"]
            decoded = self._sdp(key_param)
            if accepted and decoded is not None:
                values.append(f"1 {_SUITES_BY_LENGTH[len(decoded[0])]} " + key_param.strip())
            for value in values:
                try:
                    crypto: Crypto | None = Crypto.parse(value)
                except SdpError:
                    crypto = None
                try:
                    attr: CryptoAttribute | None = parse_crypto(value)
                except ValueError:
                    attr = None
                self.assertEqual(crypto is None, attr is None, value)
                if crypto is not None and attr is not None:
                    self.assertEqual(
                        (attr.tag, attr.suite, attr.session_params), (crypto.tag, crypto.suite, crypto.session_params)
                    )
                    if crypto.suite in SUITES:
                        self.assertEqual([k.key for k in attr.keys], [k.key_salt for k in crypto.keys])
