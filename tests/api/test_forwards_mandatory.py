"""
C{POST /{domain}/startsiprecforward} refuses C{"mandatory": true}
(L{aiconnect.api.routes.rest_forward_order}): only a newCall answer can
hold the SRC's 200 OK (SPEC s13); the session a REST order names is
already answered.
"""

from __future__ import annotations

from tests.api.helpers import DOMAIN, RecordingForwarder, TenantTestCase


class MandatoryRestTests(TenantTestCase):
    """
    The C{mandatory} field through the REST API.
    """

    URI = f"sip:aiforward@{DOMAIN}"

    def test_mandatory_refused(self) -> None:
        """
        C{"mandatory": true} answers 400 naming the field, with the reason;
        no forward is ordered.
        """
        code, body, _ = self.client.call(
            "POST", f"/{DOMAIN}/startsiprecforward", body={"sessionId": "ses_test1", "uri": self.URI, "mandatory": True}
        )
        self.assertEqual((code, body.get("field"), body.get("error")), (400, "mandatory", "only in a newCall answer"))
        self.assertEqual(self.call.call.forwards, {})

    def test_not_mandatory_accepted(self) -> None:
        """
        C{"mandatory": false} is the default and accepted.
        """
        forwarder = RecordingForwarder()
        self.call.leg_factory = forwarder
        code, body, _ = self.client.call(
            "POST", f"/{DOMAIN}/startsiprecforward", body={"sessionId": "ses_test1", "uri": self.URI, "mandatory": False}
        )
        self.assertEqual(code, 200, body)
        self.assertEqual([info.forward_id for info in forwarder.started], [body["forwardId"]])

    def test_bad_value_still_named(self) -> None:
        """
        A non-boolean C{mandatory} answers 400 naming it, as before.
        """
        code, body, _ = self.client.call(
            "POST", f"/{DOMAIN}/startsiprecforward", body={"sessionId": "ses_test1", "uri": self.URI, "mandatory": "yes"}
        )
        self.assertEqual((code, body.get("field")), (400, "mandatory"))
