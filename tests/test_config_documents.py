"""
Tests of L{aiconnect.config.documents}: the tenant and trunk objects of the
provisioning API (SPEC s11), validated by the file's own code.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.config import load_string
from aiconnect.config.documents import (
    HIDDEN,
    MAX_LIST,
    MAX_TRUNKS,
    keep_hidden,
    redacted,
    tenant_document,
    tenant_from_document,
    trunk_document,
    trunk_from_document,
)
from aiconnect.errors import ConfigError
from tests.provisioning.support import FILE_TOML, OTHER_SECRET, tenant_object


class DocumentTests(SynchronousTestCase):
    """
    Tenant objects in and out.
    """

    def test_round_trip(self) -> None:
        """
        A tenant object read and written back gives the same tenant, with
        every key of the file's C{[[tenant]]} in the same spelling.
        """
        tenant = tenant_from_document(tenant_object(max_sessions=5, allowed_sources=["10.0.0.0/8"]))
        document = tenant_document(tenant)
        self.assertEqual(tenant_from_document(document), tenant)
        self.assertEqual(document["trunks"][0]["password"], "pw-1")
        self.assertEqual(document["allowed_sources"], ["10.0.0.0/8"])
        self.assertEqual(document["max_sessions"], 5)

    def test_same_tenant_as_the_file(self) -> None:
        """
        The file's tenant, as an object, reads into the very same
        L{TenantConfig}: one validation for both.
        """
        from_file = load_string(FILE_TOML).tenants[0]
        self.assertEqual(tenant_from_document(tenant_document(from_file)), from_file)

    def test_null_is_the_default(self) -> None:
        """
        C{null} stands for the default (C{max_sessions}: the [limits] one).
        """
        tenant = tenant_from_document(tenant_object(max_sessions=None, callback_timeout=None))
        self.assertIsNone(tenant.max_sessions)
        self.assertEqual(tenant.callback_timeout, 5.0)

    def test_errors_name_the_field(self) -> None:
        """
        Every refusal names the JSON field, with indices into C{trunks}.
        """
        bad_trunk = {"match": "b", "target": "127.0.0.1", "transport": "sctp"}
        cases = [
            (tenant_object(callback_url=None), "callback_url"),
            (tenant_object(trunks=[tenant_object()["trunks"][0], bad_trunk]), "trunks[1].transport"),
            (tenant_object(trunks=[{"match": "a", "target": "x"}, {"match": "a", "target": "y"}]), "trunks[1].match"),
            (tenant_object(api_tokens=["has space"]), "api_tokens[0]"),
            (tenant_object(colour="blue"), "colour"),
            (tenant_object(trunks="no"), "trunks"),
            (tenant_object(trunks=[{"match": str(i), "target": "h"} for i in range(MAX_TRUNKS + 1)]), "trunks"),
            (tenant_object(api_tokens=[f"t{i}" for i in range(MAX_LIST["api_tokens"] + 1)]), "api_tokens"),
            (tenant_object(allowed_sources=[f"10.0.{i // 256}.{i % 256}/32" for i in range(MAX_LIST["allowed_sources"] + 1)]), "allowed_sources"),
        ]
        for document, field in cases:
            with self.subTest(field=field):
                e = self.assertRaises(ConfigError, tenant_from_document, document)
                self.assertEqual(e.key, field)
        e = self.assertRaises(ConfigError, trunk_from_document, {"match": "a", "target": "h", "ring_timeout": "x"})
        self.assertEqual(e.key, "ring_timeout")


class SecretTests(SynchronousTestCase):
    """
    Secrets are write-only.
    """

    def test_redacted(self) -> None:
        """
        A GET shows every secret as C{***}; an empty password stays empty.
        """
        document = tenant_document(
            tenant_from_document(tenant_object(trunks=[{"match": "a", "target": "h", "username": "u", "password": "p"}, {"match": "b", "target": "h"}]))
        )
        shown = redacted(document)
        self.assertEqual(shown["signing_secret"], HIDDEN)
        self.assertEqual(shown["api_tokens"], [HIDDEN])
        self.assertEqual([t["password"] for t in shown["trunks"]], [HIDDEN, ""])
        self.assertEqual(document["signing_secret"], OTHER_SECRET, "the stored object is not changed")
        self.assertNotIn("pw", repr(redacted(trunk_document(tenant_from_document(tenant_object()).trunks[0]))))

    def test_hidden_sent_back_keeps_the_stored(self) -> None:
        """
        A GET's output sent back keeps every stored secret.
        """
        stored = tenant_document(tenant_from_document(tenant_object()))
        kept = keep_hidden(redacted(stored), stored)
        self.assertEqual(tenant_from_document(kept), tenant_from_document(stored))
        trunk = stored["trunks"][0]
        self.assertEqual(keep_hidden(redacted(trunk), trunk)["password"], "pw-1")

    def test_hidden_without_a_stored_secret(self) -> None:
        """
        C{***} for a secret nothing stores, or mixed with new tokens, is
        refused naming the field.
        """
        stored = tenant_document(tenant_from_document(tenant_object()))
        cases = [
            (dict(tenant_object(), signing_secret=HIDDEN), None, "signing_secret"),
            (dict(tenant_object(), api_tokens=[HIDDEN, "new"]), stored, "api_tokens"),
            (dict(tenant_object(), trunks=[{"match": "other", "target": "h", "username": "u", "password": HIDDEN}]), stored, "trunks[0].password"),
        ]
        for sent, old, field in cases:
            with self.subTest(field=field):
                e = self.assertRaises(ConfigError, keep_hidden, sent, old)
                self.assertEqual(e.key, field)
        e = self.assertRaises(ConfigError, keep_hidden, {"match": "a", "target": "h", "password": HIDDEN}, None)
        self.assertEqual(e.key, "password")
