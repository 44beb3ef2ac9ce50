"""
Tests of L{aiconnect.provisioning.live}: the configuration in force.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.config.documents import tenant_from_document
from aiconnect.errors import ConfigError
from aiconnect.provisioning import LiveConfig
from tests.provisioning.support import file_config, tenant_object


class LiveConfigTests(SynchronousTestCase):
    """
    L{LiveConfig} reads like a Config and changes as a whole.
    """

    def test_reads_like_the_current_config(self) -> None:
        """
        Attributes and methods are the current Config's; the file's tenants
        come first, then the provisioned ones.
        """
        api = tenant_from_document(tenant_object())
        live = LiveConfig(file_config(), [api])
        self.assertEqual([t.domain for t in live.tenants], ["file.example.com", "api.example.com"])
        self.assertIs(live.tenant_for_domain("API.example.com."), api)
        self.assertEqual(live.limits, file_config().limits)
        self.assertEqual((live.source("file.example.com"), live.source("api.example.com"), live.source("x")), ("file", "api", None))

    def test_lookup_follows_changes(self) -> None:
        """
        The domain index answers like the Config's own lookup before and
        after a change, in any case and with a trailing dot.
        """
        live = LiveConfig(file_config())
        api = tenant_from_document(tenant_object())
        self.assertIsNone(live.tenant_for_domain("api.example.com"))
        live.apply(provisioned={api.domain: api})
        for name in ("api.example.com", "API.Example.com.", "file.example.com", "nowhere.example.com"):
            self.assertIs(live.tenant_for_domain(name), live.current.tenant_for_domain(name))
        live.apply(provisioned={})
        self.assertIsNone(live.tenant_for_domain("api.example.com"))

    def test_file_shadows_provisioned(self) -> None:
        """
        A provisioned tenant whose domain the file defines is not in force
        (the file's is), but stays provisioned.
        """
        shadowed = tenant_from_document(tenant_object("file.example.com", api_tokens=["tok-x"]))
        live = LiveConfig(file_config(), [shadowed])
        self.assertEqual(len(live.tenants), 1)
        self.assertEqual(live.tenant_for_domain("file.example.com").api_tokens, ("tok-file",))
        self.assertEqual(live.source("file.example.com"), "file")
        self.assertIn("file.example.com", live.provisioned)

    def test_apply_notifies_and_keeps_old_objects(self) -> None:
        """
        A change builds a new Config: an object taken before (a live call's
        tenant) is unchanged; listeners get (old, new).
        """
        live = LiveConfig(file_config())
        before = live.current
        tenant_before = live.tenant_for_domain("file.example.com")
        seen: list[Any] = []
        live.listen(lambda old, new: seen.append((old, new)))
        api = tenant_from_document(tenant_object())
        new = live.apply(provisioned={api.domain: api})
        self.assertEqual(seen, [(before, new)])
        self.assertIsNot(new, before)
        self.assertIs(live.tenant_for_domain("file.example.com"), tenant_before)
        self.assertEqual(len(before.tenants), 1)

    def test_conflict_changes_nothing(self) -> None:
        """
        A provisioned tenant sharing a token with the file's is refused
        naming it; the configuration in force stays.
        """
        live = LiveConfig(file_config())
        before = live.current
        thief = tenant_from_document(tenant_object(api_tokens=["tok-file"]))
        e = self.assertRaises(ConfigError, live.apply, provisioned={thief.domain: thief})
        self.assertEqual(e.key, "provisioned tenant 'api.example.com'.api_tokens[0]")
        self.assertIs(live.current, before)
        self.assertNotIn("tok-file", str(e))

    def test_failing_listener(self) -> None:
        """
        A listener that raises is logged; the others still run and the
        change stands.
        """
        live = LiveConfig(file_config())
        seen: list[int] = []

        def broken(old: Any, new: Any) -> None:
            raise RuntimeError("boom")

        live.listen(broken)
        live.listen(lambda old, new: seen.append(1))
        api = tenant_from_document(tenant_object())
        live.apply(provisioned={api.domain: api})
        self.assertEqual(seen, [1])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertIs(live.tenant_for_domain("api.example.com"), api)
