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
        C{"mandatory": true} answers 400 naming the field, with the reason,
        and no forward is ordered; C{"mandatory": false} (the default) is
        accepted.
        """
        forwarder = RecordingForwarder()
        self.call.leg_factory = forwarder
        code, body, _ = self.client.call(
            "POST", f"/{DOMAIN}/startsiprecforward", body={"sessionId": "ses_test1", "uri": self.URI, "mandatory": True}
        )
        self.assertEqual((code, body.get("field"), body.get("error")), (400, "mandatory", "only in a newCall answer"))
        self.assertEqual(self.call.call.forwards, {})
        code, body, _ = self.client.call(
            "POST", f"/{DOMAIN}/startsiprecforward", body={"sessionId": "ses_test1", "uri": self.URI, "mandatory": False}
        )
        self.assertEqual(code, 200, body)
        self.assertEqual([info.forward_id for info in forwarder.started], [body["forwardId"]])
