# -*- test-case-name: tests.api.test_forwards,tests.siprec.test_forward -*-
"""
The application's orders: C{startSIPRecForward} (SPEC s3), shared by the
newCall answer and C{POST /{domain}/startsiprecforward}.

Validation is strict and names the offending field, so that nothing invalid
ever reaches the wire: the REST API answers 400 with the field, the callback
path reports C{SIPRECFORWARDFAILED} with the reason.  Everything accepted can
be reported back as JSON: no lone surrogate (C{json.loads} makes one of a
C{"\ud800"} escape) in any string, and a C{sipRecForwardReferenceId} of at
most L{MAX_REFERENCE_DEPTH} levels and L{MAX_REFERENCE_BYTES} bytes.

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aiconnect.config import TenantConfig, TrunkConfig
from aiconnect.errors import AiconnectError
from aiconnect.events import MAX_REFERENCE_BYTES, MAX_REFERENCE_DEPTH
from aiconnect.sip import abnf
from aiconnect.sip.uri import SipUri, UriError, parse_uri
from aiconnect.siprec.correlation import is_correlation_name
from aiconnect.siprec.metadata import PartyOverride
from aiconnect.text import json_problem, replace_surrogates

CODECS = ("PCMA", "PCMU")
MAX_X_HEADERS = 20
MAX_X_HEADER_VALUE = 1024
MAX_NAME = 256
LABEL_RE = re.compile(r"[A-Za-z0-9._\-]{1,64}\Z")
X_HEADER_RE = re.compile(r"[Xx]-[" + abnf.TOKEN_CHARS + r"]+\Z")
#: Control characters other than HTAB (RFC 3261 s25.1 TEXT-UTF8 excludes them).
CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

_FORWARD_KEYS = {
    "uri",
    "codec",
    "srtp",
    "caller",
    "callingParty",
    "calledParty",
    "callee",
    "xHeaders",
    "sipRecForwardReferenceId",
    "usePrivateIp",
    "mandatory",
    "copyHeaders",
}
#: At most this many names in an order's C{copyHeaders}.
MAX_COPY_HEADERS = 16


class OrderError(AiconnectError):
    """
    An order is invalid.

    @ivar field: the offending field (dotted, e.g. C{caller.label}, or
        C{startSIPRecForward[1].uri}); always valid Unicode (a lone
        surrogate in a name the application sent is shown as U+FFFD).
    @ivar message: what is wrong, one line (valid Unicode too).
    """

    def __init__(self, field: str, message: str) -> None:
        field = replace_surrogates(field)
        message = replace_surrogates(message)
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return "%s: %s" % (self.field, self.message) if self.field else self.message


@dataclass(frozen=True, slots=True)
class ForwardOrder:
    """
    A validated C{startSIPRecForward} object.
    """

    uri: str
    trunk: TrunkConfig
    codec: str = "PCMA"
    srtp: bool = False
    caller: PartyOverride | None = None
    called: PartyOverride | None = None
    x_headers: tuple[tuple[str, str], ...] = ()
    reference_id: Any = None
    use_private_ip: bool = False
    #: SPEC s13: the inbound 200 OK waits for this forward (newCall only).
    mandatory: bool = False
    #: SPEC s13: correlation headers of the inbound INVITE to copy.
    copy_headers: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        """
        The order as JSON (for the REST API and events).
        """
        out: dict[str, Any] = {"uri": self.uri, "codec": self.codec, "srtp": self.srtp, "usePrivateIp": self.use_private_ip}
        if self.mandatory:
            out["mandatory"] = True
        if self.copy_headers:
            out["copyHeaders"] = list(self.copy_headers)
        if self.reference_id is not None:
            out["sipRecForwardReferenceId"] = self.reference_id
        return out


def _join(prefix: str, name: str) -> str:
    return prefix + "." + name if prefix else name


def _bool(obj: dict[str, Any], key: str, prefix: str, default: bool) -> bool:
    if key not in obj:
        return default
    value = obj[key]
    if not isinstance(value, bool):
        raise OrderError(_join(prefix, key), "must be true or false")
    return value


def _party(value: Any, field: str) -> PartyOverride:
    if not isinstance(value, dict):
        raise OrderError(field, "must be an object with name, user, label")
    unknown = set(value) - {"name", "user", "label"}
    if unknown:
        raise OrderError(_join(field, sorted(unknown)[0]), "unknown field")
    name = value.get("name")
    if name is not None:
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or CONTROL_RE.search(name):
            raise OrderError(_join(field, "name"), "must be a non-empty string of at most %d characters without control characters" % MAX_NAME)
        if json_problem(name) is not None:
            raise OrderError(_join(field, "name"), "not valid Unicode (lone surrogate)")
    user = value.get("user")
    if user is not None:
        if not isinstance(user, str) or not abnf.USER_RE.match(user) or len(user) > MAX_NAME:
            raise OrderError(_join(field, "user"), "must be a SIP user part (RFC 3261 user)")
    label = value.get("label")
    if label is not None:
        if not isinstance(label, str) or not LABEL_RE.match(label):
            raise OrderError(_join(field, "label"), "must be 1-64 characters of A-Z a-z 0-9 . _ -")
    return PartyOverride(name, user, label)


def _alias(obj: dict[str, Any], names: tuple[str, str], prefix: str) -> PartyOverride | None:
    present = [n for n in names if n in obj and obj[n] is not None]
    if len(present) > 1:
        raise OrderError(_join(prefix, present[1]), "conflicts with %s (aliases)" % present[0])
    if not present:
        return None
    return _party(obj[present[0]], _join(prefix, present[0]))


def _x_headers(value: Any, field: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise OrderError(field, "must be an object of header name to value")
    if len(value) > MAX_X_HEADERS:
        raise OrderError(field, "at most %d headers" % MAX_X_HEADERS)
    out = []
    seen = set()
    for name, v in value.items():
        f = _join(field, str(name))
        if not isinstance(name, str) or not X_HEADER_RE.match(name):
            raise OrderError(f, "header name must be X- followed by a token")
        if name.lower() in seen:
            raise OrderError(f, "duplicate header name")
        seen.add(name.lower())
        if not isinstance(v, str):
            raise OrderError(f, "value must be a string")
        if CONTROL_RE.search(v):
            raise OrderError(f, "value must not contain CR, LF or control characters")
        if json_problem(v) is not None:
            raise OrderError(f, "value is not valid Unicode (lone surrogate)")
        if len(v.encode("utf-8")) > MAX_X_HEADER_VALUE:
            raise OrderError(f, "value longer than %d bytes" % MAX_X_HEADER_VALUE)
        out.append((name, v.strip()))
    return tuple(out)


def _copy_headers(value: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise OrderError(field, "must be a list of header names")
    if len(value) > MAX_COPY_HEADERS:
        raise OrderError(field, "at most %d header names" % MAX_COPY_HEADERS)
    out: list[str] = []
    for i, name in enumerate(value):
        f = "%s[%d]" % (field, i)
        if not isinstance(name, str) or not abnf.TOKEN_RE.match(name) or not is_correlation_name(name):
            raise OrderError(f, "must be Session-ID, User-to-User, Cisco-Guid or an X- header name")
        if name.lower() in (n.lower() for n in out):
            raise OrderError(f, "duplicate header name")
        out.append(name)
    return tuple(out)


def reference_object(value: Any, field: str) -> Any:
    """
    Validate a C{sipRecForwardReferenceId} (or any other reference id or
    metadata object of an order): a JSON object that can be echoed in events (L{aiconnect.events.reportable_reference} accepts
    exactly these).

    @return: C{value}, or L{None} if absent.
    @raise OrderError: Naming the field, or the place inside it.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise OrderError(field, "must be a JSON object")
    problem = json_problem(value, max_depth=MAX_REFERENCE_DEPTH, max_bytes=MAX_REFERENCE_BYTES)
    if problem is not None:
        path, reason = problem
        raise OrderError(_join(field, path) if path else field, reason)
    return value


def parse_forward_order(obj: Any, tenant: TenantConfig, prefix: str = "") -> ForwardOrder:
    """
    Validate one C{startSIPRecForward} object for a tenant.

    @param obj: the decoded JSON value.
    @param tenant: the tenant whose trunks and domain apply.
    @param prefix: the field path of C{obj} (for error messages).
    @raise OrderError: naming the first invalid field.
    """
    if not isinstance(obj, dict):
        raise OrderError(prefix, "must be an object")
    unknown = sorted(set(obj) - _FORWARD_KEYS)
    if unknown:
        raise OrderError(_join(prefix, unknown[0]), "unknown field")
    uri_text = obj.get("uri")
    f_uri = _join(prefix, "uri")
    if not isinstance(uri_text, str) or not uri_text:
        raise OrderError(f_uri, "required, a sip: URI")
    try:
        uri = parse_uri(uri_text)
    except UriError as e:
        raise OrderError(f_uri, "not a valid SIP URI (%s)" % (e.reason,))
    if not isinstance(uri, SipUri):
        raise OrderError(f_uri, "must be a sip: or sips: URI")
    if not uri.user:
        raise OrderError(f_uri, "needs a user part naming a trunk")
    if uri.host.lower().rstrip(".") != tenant.domain.lower().rstrip("."):
        raise OrderError(f_uri, "domain must be the tenant's domain %s" % (tenant.domain,))
    trunk = tenant.trunk_for(uri.user_unescaped or "")
    if trunk is None:
        raise OrderError(f_uri, "no trunk matches user part %r" % (uri.user,))
    codec = obj.get("codec", "PCMA")
    if not isinstance(codec, str) or codec.upper() not in CODECS:
        raise OrderError(_join(prefix, "codec"), "must be PCMA or PCMU")
    srtp = _bool(obj, "srtp", prefix, False)
    if srtp and trunk.transport != "tls":
        raise OrderError(_join(prefix, "srtp"), "SRTP needs a TLS trunk (trunk %r uses %s)" % (trunk.match, trunk.transport))
    caller = _alias(obj, ("caller", "callingParty"), prefix)
    called = _alias(obj, ("calledParty", "callee"), prefix)
    x_headers = _x_headers(obj.get("xHeaders"), _join(prefix, "xHeaders"))
    if caller is not None and called is not None and caller.label is not None and caller.label == called.label:
        which = [n for n in ("calledParty", "callee") if obj.get(n) is not None][0]
        raise OrderError(_join(prefix, which + ".label"), "same label as the calling party: labels must differ")
    ref = reference_object(obj.get("sipRecForwardReferenceId"), _join(prefix, "sipRecForwardReferenceId"))
    private = _bool(obj, "usePrivateIp", prefix, False)
    mandatory = _bool(obj, "mandatory", prefix, False)
    copy = _copy_headers(obj.get("copyHeaders"), _join(prefix, "copyHeaders"))
    return ForwardOrder(
        uri=str(uri),
        trunk=trunk,
        codec=codec.upper(),
        srtp=srtp,
        caller=caller,
        called=called,
        x_headers=x_headers,
        reference_id=ref,
        use_private_ip=private,
        mandatory=mandatory,
        copy_headers=copy,
    )


def orders_from_answer(value: Any, key: str) -> list[tuple[str, Any]]:
    """
    The orders of one kind in a newCall answer as a list of (field path,
    raw object): C{value} may be one object or a list.

    @param value: The answer's value under C{key} (L{None}: absent).
    @param key: The answer's key (C{startSIPRecForward}, C{startStream},
        C{startRecording}), the start of each field path.
    @return: C{[(key, value)]}, or C{[(key[i], value[i]), ...]} for a list.
    """
    if value is None:
        return []
    if isinstance(value, list):
        return [("%s[%d]" % (key, i), v) for i, v in enumerate(value)]
    return [(key, value)]


def forward_orders_from_answer(value: Any) -> list[tuple[str, Any]]:
    """
    The C{startSIPRecForward} of a newCall answer as a list of (field path,
    raw object): it may be one object or a list.
    """
    return orders_from_answer(value, "startSIPRecForward")
