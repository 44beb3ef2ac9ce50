"""
Tenant objects and configurations shared by the provisioning tests.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import ensureDeferred

from aiconnect.config import Config, load_string

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_dGVzdC1zZWNyZXQtMg=="

#: A configuration file with one tenant of its own.
FILE_TOML = f"""
[sip]
udp_port = 0
tcp_port = 0
tls_port = 0

[api]
admin_tokens = ["adm-1"]

[events]
database = ":memory:"

[[tenant]]
domain = "file.example.com"
callback_url = "http://127.0.0.1:9"
signing_secret = "{SECRET}"
api_tokens = ["tok-file"]

  [[tenant.trunk]]
  match = "rec"
  target = "127.0.0.1:5999"
"""


def file_config(extra: str = "") -> Config:
    """
    @return: L{FILE_TOML} (with C{extra} appended), loaded.
    """
    return load_string(FILE_TOML + extra)


def tenant_object(domain: str = "api.example.com", **changes: Any) -> dict[str, Any]:
    """
    @return: A valid tenant object of the API, with C{changes} applied.
    """
    document: dict[str, Any] = {
        "domain": domain,
        "callback_url": "http://127.0.0.1:9100",
        "signing_secret": OTHER_SECRET,
        "api_tokens": ["tok-" + domain],
        "trunks": [
            {"match": "aiforward", "target": "127.0.0.1:5070", "transport": "tcp", "username": "u", "password": "pw-1"}
        ],
    }
    document.update(changes)
    return document


def done(test: Any, work: Any) -> Any:
    """
    @param work: A coroutine or Deferred that must have finished already
        (SQLite answers at once).
    @return: Its result.
    """
    return test.successResultOf(ensureDeferred(work))


def refused(test: Any, work: Any) -> Any:
    """
    @param work: A change that must have been refused already.
    @return: The L{ProvisioningError}.
    """
    from aiconnect.provisioning import ProvisioningError

    return test.failureResultOf(ensureDeferred(work), ProvisioningError).value
