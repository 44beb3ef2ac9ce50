# -*- test-case-name: tests.test_openapi_interop -*-
"""
The OpenAPI document on vendor interop (SPEC s13): the order's
C{mandatory} and C{copyHeaders}, newCall's C{correlation}, stated as the
code enforces them.
"""

from __future__ import annotations

import json
import re

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.api import OPENAPI
from aiconnect.sip import abnf
from aiconnect.siprec import correlation, orders
from aiconnect.views import new_call_payload
from tests.api.helpers import make_call, make_config
from tests.openapi_support import SCHEMAS, at, component, validator

FORWARD = {"sessionId": "ses_test1", "uri": "sip:aiforward@customer.example.com"}


class OrderSchemaTests(SynchronousTestCase):
    """
    C{mandatory} and C{copyHeaders} in both order schemas.
    """

    def test_copy_headers_accepted(self) -> None:
        """
        An order with mandatory and copyHeaders validates, as a REST request
        and in a newCall answer.
        """
        order = dict(FORWARD, mandatory=True, copyHeaders=["Session-ID", "cisco-guid", "User-to-User", "X-Genesys-CallUUID"])
        self.assertEqual([e.message for e in component("StartSIPRecForwardRequest").iter_errors(order)], [])
        del order["sessionId"]
        answer = {"startSIPRecForward": [order]}
        self.assertEqual([e.message for e in component("NewCallAnswer").iter_errors(answer)], [])

    def test_bad_copy_headers_refused(self) -> None:
        """
        What the server refuses in copyHeaders the schema refuses: another
        header, a non-string, too many names, a duplicate, a mandatory that
        is no boolean.
        """
        schema = component("StartSIPRecForwardRequest")
        too_many = ["X-H%d" % i for i in range(orders.MAX_COPY_HEADERS + 1)]
        for bad in (["Session-ID", "Via"], [1], too_many, ["X-A", "X-A"], "Session-ID"):
            with self.subTest(bad):
                self.assertFalse(schema.is_valid(dict(FORWARD, copyHeaders=bad)))
                with self.assertRaises(orders.OrderError):
                    orders._copy_headers(bad, "copyHeaders")
        self.assertFalse(schema.is_valid(dict(FORWARD, mandatory="yes")))

    def test_pattern_behaves_like_the_code(self) -> None:
        """
        The copyHeaders item pattern accepts exactly the names the code
        does (a token that is a correlation header name).
        """
        for name in ("StartSIPRecForward", "StartSIPRecForwardRequest"):
            pattern = at(SCHEMAS + (name, "properties", "copyHeaders", "items", "pattern"))
            for text in ("Session-ID", "SESSION-ID", "session-id", "User-to-User", "Cisco-Guid", "X-Foo", "x-a.b",
                         "X-", "Via", "Session-IDs", "X-Foo Bar", "Y-Foo", "Cisco-GUID", "é", ""):  # fmt: skip
                with self.subTest(name=name, text=text):
                    code = abnf.TOKEN_RE.match(text) is not None and correlation.is_correlation_name(text)
                    self.assertEqual(re.search(pattern, text) is not None, code)

    def test_limits(self) -> None:
        """
        The documented limits are the code's.
        """
        for name in ("StartSIPRecForward", "StartSIPRecForwardRequest"):
            self.assertEqual(at(SCHEMAS + (name, "properties", "copyHeaders", "maxItems")), orders.MAX_COPY_HEADERS)
        corr = at(SCHEMAS + ("NewCall", "properties", "correlation"))
        self.assertEqual((corr["maxProperties"], corr["additionalProperties"]["maxLength"]), (correlation.MAX_HEADERS, correlation.MAX_VALUE))


class NewCallSchemaTests(SynchronousTestCase):
    """
    newCall's C{correlation} is documented and required.
    """

    def test_correlation(self) -> None:
        """
        The newCall the SRS builds, with correlation headers, validates;
        without C{correlation} it does not.
        """
        call = make_call(make_config(self, with_jwt=False), acked=False).call
        call.correlation = correlation.correlation_headers(
            [("Session-ID", "ab30317f1a784dc48ff824d0d3715d86;remote=00000000000000000000000000000000"), ("Cisco-Guid", "1-2-3-4")]
        )
        payload = json.loads(json.dumps(new_call_payload(call)))
        post = OPENAPI["webhooks"]["newCall"]["post"]
        schema = validator(post["requestBody"]["content"]["application/json"]["schema"])
        self.assertEqual([e.message for e in schema.iter_errors(payload)], [])
        self.assertEqual(payload["correlation"]["Cisco-Guid"], "1-2-3-4")
        del payload["correlation"]
        self.assertFalse(schema.is_valid(payload))
