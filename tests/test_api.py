"""
The tests of L{aiconnect.api} moved to L{tests.api} (one module per
concern: L{tests.api.test_routes}, L{tests.api.test_auth},
L{tests.api.test_metrics}, L{tests.api.test_forwards}); this module keeps
their shared helpers importable under the old name (from
L{tests.api.helpers}) and holds no tests.
"""

from __future__ import annotations

from tests.api.helpers import (
    BAD_ORDER_FIELDS,
    CONFIG_TEMPLATE,
    DOMAIN,
    FORWARD_URI,
    OTHER_DOMAIN,
    OTHER_TOKEN,
    SECRET,
    TOKEN,
    UNREPORTABLE_ORDER_FIELDS,
    ApiClient,
    RecordingForwarder,
    bearer,
    hs256_with_public_key,
    make_call,
    make_config,
    nested,
    public_pem,
    rs256,
    rsa_key,
    temporary_directory,
    unsigned,
)

__all__ = [
    "BAD_ORDER_FIELDS",
    "CONFIG_TEMPLATE",
    "DOMAIN",
    "FORWARD_URI",
    "OTHER_DOMAIN",
    "OTHER_TOKEN",
    "SECRET",
    "TOKEN",
    "UNREPORTABLE_ORDER_FIELDS",
    "ApiClient",
    "RecordingForwarder",
    "bearer",
    "hs256_with_public_key",
    "make_call",
    "make_config",
    "nested",
    "public_pem",
    "rs256",
    "rsa_key",
    "temporary_directory",
    "unsigned",
]
