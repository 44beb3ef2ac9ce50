"""
Tests for L{aiconnect.sip.sdes}: SDES a=crypto attributes (RFC 4568).
"""

from __future__ import annotations

import json
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.sip.sdes import Crypto, KeyParam
from aiconnect.sip.sdp_fields import Attribute, Origin, SdpError
from aiconnect.sip.sdp_model import MediaDescription, SessionDescription

DATA = Path(__file__).parent.parent / "data"
KEY_A = bytes(range(30))
KEY_B = bytes(range(100, 130))


def _origin() -> Origin:
    return Origin.new("192.0.2.99", sess_id="4242")


class CryptoTests(SynchronousTestCase):
    """
    SDES a=crypto attributes (RFC 4568).
    """

    def test_rfc4568_examples(self) -> None:
        """
        Every RFC 4568 example parses to its documented keys, lifetimes and
        MKIs, and writes back to the same text.
        """
        corpus = json.loads((DATA / "srtp" / "rfc4568-crypto-examples.json").read_text())
        self.assertEqual(len(corpus["examples"]), 8)
        for example in corpus["examples"]:
            text = example["unfolded"]
            if text.startswith("a=crypto:"):
                crypto = Crypto.parse(text)
                keys = crypto.keys
                self.assertEqual("a=crypto:" + crypto.value(), text)
            else:
                keys = (KeyParam.parse(text),)
                self.assertEqual(keys[0].text(), text)
            self.assertEqual(len(keys), len(example["keys"]), text)
            for key, expected in zip(keys, example["keys"]):
                self.assertEqual(key.key_salt[:16].hex(), expected["master_key"])
                self.assertEqual(key.key_salt[16:].hex(), expected["master_salt"])
                self.assertEqual(key.lifetime, expected["lifetime"])
                self.assertEqual(key.mki, expected["mki"])
                self.assertEqual(key.mki_length, expected["mki_length"])

    def test_session_params(self) -> None:
        """
        Session parameters after the key parameters are kept.
        """
        crypto = Crypto.parse(
            "crypto:1 AES_CM_128_HMAC_SHA1_80 "
            "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4 FEC_ORDER=FEC_SRTP"
        )
        self.assertEqual(crypto.session_params, ("FEC_ORDER=FEC_SRTP",))
        self.assertFalse(crypto.usable)

    def test_usable(self) -> None:
        """
        One key of a supported suite without MKI or session parameters is
        usable; an MKI, two keys or an unknown suite are not.
        """
        self.assertTrue(Crypto.from_key(1, "AES_CM_128_HMAC_SHA1_80", KEY_A).usable)
        self.assertTrue(Crypto.from_key(1, "AES_CM_128_HMAC_SHA1_32", KEY_A).usable)
        self.assertFalse(Crypto(1, "AES_CM_128_HMAC_SHA1_80", (KeyParam(KEY_A, None, 1, 4),)).usable)
        self.assertFalse(Crypto(1, "AES_CM_128_HMAC_SHA1_80", (KeyParam(KEY_A), KeyParam(KEY_B))).usable)
        self.assertFalse(Crypto.from_key(1, "F8_128_HMAC_SHA1_80", KEY_A).usable)

    def test_malformed(self) -> None:
        """
        Malformed crypto values raise L{SdpError}; a malformed line in a
        media section is skipped by L{MediaDescription.crypto}.
        """
        for bad in (
            "1 AES_CM_128_HMAC_SHA1_80",
            "x AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
            "1 AES_CM_128_HMAC_SHA1_80 inline:not*base64",
            "1 AES_CM_128_HMAC_SHA1_80 uri:http://example.com/key",
            "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|x",
        ):
            self.assertRaises(SdpError, Crypto.parse, bad)
        m = MediaDescription(
            "audio",
            4000,
            "RTP/SAVP",
            ("0",),
            attributes=(
                Attribute("crypto", "garbage"),
                Crypto.from_key(3, "AES_CM_128_HMAC_SHA1_80", KEY_A).attribute(),
            ),
        )
        self.assertEqual([c.tag for c in m.crypto], [3])

    def test_unpadded_key(self) -> None:
        """
        A key whose base64 padding was stripped is still decoded.
        """
        key = bytes(range(46))  # AES-256 key and salt: 64 characters with "=="
        crypto = Crypto.from_key(1, "AES_CM_256_HMAC_SHA1_80", key)
        stripped = crypto.value().replace("=", "")
        self.assertEqual(Crypto.parse(stripped).key, key)

    def test_key_not_in_repr(self) -> None:
        """
        No repr shows a key: not a key parameter's, a crypto value's, nor
        that of a media section or session holding an a=crypto line.
        """
        crypto = Crypto.from_key(1, "AES_CM_128_HMAC_SHA1_80", KEY_A)
        encoded = crypto.keys[0].text().split(":", 1)[1]
        self.assertNotIn(encoded, repr(crypto))
        self.assertNotIn(encoded, repr(crypto.keys[0]))
        self.assertNotIn(encoded, str(crypto))
        media = MediaDescription("audio", 1, "RTP/SAVP", ("0",), attributes=(crypto.attribute(),))
        self.assertNotIn(encoded, repr(media))
        self.assertNotIn(encoded, repr(SessionDescription(_origin(), media=(media,))))
        self.assertIn(encoded, SessionDescription(_origin(), media=(media,)).to_bytes().decode())

    def test_srtp_module_reads_our_lines(self) -> None:
        """
        The SRTP module parses the crypto value we write to the same key.
        """
        from aiconnect.media.srtp import parse_crypto

        crypto = Crypto.from_key(5, "AES_CM_128_HMAC_SHA1_80", KEY_A, lifetime="2^31")
        parsed = parse_crypto(crypto.value())
        self.assertEqual((parsed.tag, parsed.suite, parsed.keys[0].key), (5, "AES_CM_128_HMAC_SHA1_80", KEY_A))
