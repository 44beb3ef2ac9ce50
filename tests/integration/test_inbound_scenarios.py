# -*- test-case-name: tests.integration.test_inbound_admission,tests.integration.test_inbound_cancel,tests.integration.test_inbound_reinvite,tests.integration.test_inbound_update,tests.integration.test_inbound_quirks -*-
"""
The old home of the inbound scenario tests, now split by subject:
L{tests.integration.test_inbound_admission},
L{tests.integration.test_inbound_cancel},
L{tests.integration.test_inbound_reinvite},
L{tests.integration.test_inbound_update} and
L{tests.integration.test_inbound_quirks}, with their harness in
L{tests.integration.scenario}.  The harness's names are re-exported here
for the modules that still import them from here; this module holds no
tests.
"""

from __future__ import annotations

from tests.integration.scenario import (
    DOMAIN,
    METADATA,
    RANGE_HIGH,
    RANGE_LOW,
    TOKEN,
    ScenarioCase,
    Src,
    _free_ports,
    _plain_invite,
    _raw_header,
    _replace_body,
    _set_content_length,
    _status,
    answer_of,
    final,
    multipart,
    parse_response,
    relabel,
    request,
    response,
)
from tests.integration.siprec_peer import sdp_offer

__all__ = [
    "DOMAIN",
    "METADATA",
    "RANGE_HIGH",
    "RANGE_LOW",
    "TOKEN",
    "ScenarioCase",
    "Src",
    "_free_ports",
    "_plain_invite",
    "_raw_header",
    "_replace_body",
    "_set_content_length",
    "_status",
    "answer_of",
    "final",
    "multipart",
    "parse_response",
    "relabel",
    "request",
    "response",
    "sdp_offer",
]
