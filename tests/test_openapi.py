# -*- test-case-name: tests.test_openapi,tests.test_openapi_outputs -*-
"""
Tests that check L{aiconnect.api} against its OpenAPI document
(L{aiconnect.api.OPENAPI}, the package data file C{aiconnect/api/openapi.json},
copied to C{docs/openapi.json}): the document is valid OpenAPI 3.1, ships
with the package, every documented operation is routed and every route is
documented, the limits, patterns and names it states are the code's, real
answers validate against the documented response schemas, the request
schemas are as strict as the server, and the callback bodies (events)
validate against the C{webhooks}.
"""

from __future__ import annotations

import configparser
import json
import re
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from werkzeug.exceptions import MethodNotAllowed, NotFound

from aiconnect import events
from aiconnect.api import JWT_LEEWAY, MAX_BODY, MAX_SESSION_ID, OPENAPI, ApiServer
from aiconnect.api.openapi import DOCUMENT_NAME, render
from aiconnect.call import CallState, ForwardAnswered, ForwardState, InboundEnded, OrderRefused
from aiconnect.registry import KEEP_ENDED, KEEP_ENDED_FOR, CallRegistry
from aiconnect.sip import abnf
from aiconnect.siprec import orders
from aiconnect.siprec.metadata import parse_metadata
from aiconnect.views import new_call_payload
from aiconnect.webhooks import EventOutbox
from tests.api.helpers import (
    BAD_ORDER_FIELDS,
    DOMAIN,
    FORWARD_URI,
    OTHER_DOMAIN,
    TOKEN,
    FakeOutputRunner,
    FakeRecordingFiles,
    FakeRunnerRegistry,
    RecordingForwarder,
    bearer,
    make_call,
    make_config,
)
from tests.api.provisioning_support import FORBIDDEN_RESPONSES, PROVISIONING_RESPONSES
from tests.cluster_rest.support import CLUSTER_RESPONSES
from tests.openapi_support import (
    NO_CONTROL,
    SCHEMAS,
    Where,
    anchored,
    at,
    check_prose,
    check_values,
    component,
    conform,
    resolve,
    validator,
)

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT_COPY = ROOT / "docs" / "openapi.json"
DATA = ROOT / "tests" / "data" / "siprec"
EVENTS_DOC = ROOT / "docs" / "events.md"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

#: BAD_ORDER_FIELDS the server refuses but a schema cannot: they depend on
#: the tenant's configuration, on URI syntax, or count bytes.
SEMANTIC_ONLY = {
    "bad uri",
    "not a sip uri",
    "wrong domain",
    "unknown trunk",
    "srtp on a non-TLS trunk",
    "xHeaders size in bytes",
}

#: The events of streams, recordings and pauses (issue 10): documented,
#: and named by L{aiconnect.events} once its builders exist.
OUTPUT_EVENT_SCHEMAS = (
    ("StreamStarted", "STREAMSTARTED"),
    ("StreamFailed", "STREAMFAILED"),
    ("StreamStopped", "STREAMSTOPPED"),
    ("RecordingStarted", "RECORDINGSTARTED"),
    ("RecordingStopped", "RECORDINGSTOPPED"),
    ("RecordingFailed", "RECORDINGFAILED"),
    ("RecordingUploaded", "RECORDINGUPLOADED"),
    ("SessionPaused", "SESSIONPAUSED"),
    ("SessionResumed", "SESSIONRESUMED"),
)

#: Responses that only a running reactor produces (the file resource writes
#: through a producer): checked over a real socket by
#: L{tests.test_openapi_outputs.RecordingFileResponseTests}.
SOCKET_RESPONSES = {("/{domain}/recordings/{recordingId}", "get", "200"), ("/{domain}/recordings/{recordingId}", "get", "206")}
#: The trunk routes' answers: produced and checked against this document by
#: tests.api.test_trunks.TrunkRouteTests.test_every_documented_answer.
TRUNK_RESPONSES = {
    (p, m, s)
    for p in ("/{domain}/trunks/{match}/health", "/{domain}/trunks/{match}/test")
    for m in OPENAPI["paths"][p]
    for s in OPENAPI["paths"][p][m]["responses"]
}

REC_ID = "rec_20261202_0123456789abcdef"

#: The event schemas of the document and the event each describes.
EVENT_SCHEMAS = (
    ("SessionStarted", events.SESSIONSTARTED),
    ("SipRecForwardStarted", events.SIPRECFORWARDSTARTED),
    ("SipRecForwardFailed", events.SIPRECFORWARDFAILED),
    ("SipRecForwardStopped", events.SIPRECFORWARDSTOPPED),
    ("SessionCompleted", events.SESSIONCOMPLETED),
) + OUTPUT_EVENT_SCHEMAS + (("SipRecForwardResumed", events.SIPRECFORWARDRESUMED),)

#: Every event name: the code's, then the documented output events the
#: code does not name yet (none once L{aiconnect.events} has them).
ALL_EVENT_NAMES = list(events.EVENT_NAMES) + [
    name for _, name in OUTPUT_EVENT_SCHEMAS if name not in events.EVENT_NAMES
]

#: Where the document lists who stops a forward and why a session ends,
#: with the prefix of the L{aiconnect.events} constants of those values.
REASONS: tuple[tuple[Where, str], ...] = (
    (SCHEMAS + ("SipRecForwardStopped", "allOf", 1, "properties", "stoppedBy", "enum"), "STOPPED_BY_"),
    (SCHEMAS + ("SessionCompleted", "allOf", 1, "properties", "reason", "enum"), "COMPLETED_"),
)

#: Values the code sends that the document does not list: none (the
#: C{restart} of L{aiconnect.recovery} was missing until issue 9).
UNDOCUMENTED_REASONS: set[str] = set()


def code_values() -> list[tuple[Where, Any]]:
    """
    The values of the document that restate a constant of the code: limits,
    validation patterns, enumerations, event names.

    @return: (where in the document, the value the code has) pairs.
    """
    codecs = list(orders.CODECS)
    rows: list[tuple[Where, Any]] = [
        (SCHEMAS + ("Party", "properties", "name", "maxLength"), orders.MAX_NAME),
        (SCHEMAS + ("Party", "properties", "name", "pattern"), NO_CONTROL),
        (SCHEMAS + ("Party", "properties", "user", "maxLength"), orders.MAX_NAME),
        (SCHEMAS + ("Party", "properties", "user", "pattern"), anchored(abnf.USER_RE)),
        (SCHEMAS + ("Party", "properties", "label", "pattern"), anchored(orders.LABEL_RE)),
        (SCHEMAS + ("Forward", "properties", "codec", "enum"), codecs),
        (SCHEMAS + ("SipRecForwardStarted", "allOf", 1, "properties", "codec", "enum"), codecs),
        (SCHEMAS + ("SessionState", "enum"), [state.value for state in CallState]),
        (SCHEMAS + ("Forward", "properties", "state", "enum"), [state.value for state in ForwardState]),
        (SCHEMAS + ("EventCommon", "properties", "event", "enum"), ALL_EVENT_NAMES),
        (SCHEMAS + ("Event", "oneOf"), [{"$ref": "#/components/schemas/" + name} for name, _ in EVENT_SCHEMAS]),
        (
            SCHEMAS + ("Event", "discriminator", "mapping"),
            {event: "#/components/schemas/" + name for name, event in EVENT_SCHEMAS},
        ),
    ]
    for name, event in EVENT_SCHEMAS:
        rows.append((SCHEMAS + (name, "allOf", 1, "properties", "event", "const"), event))
    for name in (
        "StartSIPRecForwardRequest",
        "StopSIPRecForwardRequest",
        "StartStreamRequest",
        "StopStreamRequest",
        "StartRecordingRequest",
        "StopRecordingRequest",
        "PauseRequest",
    ):
        rows.append((SCHEMAS + (name, "properties", "sessionId", "maxLength"), MAX_SESSION_ID))
    for name in ("StartSIPRecForward", "StartSIPRecForwardRequest"):
        properties = SCHEMAS + (name, "properties")
        rows += [
            (properties + ("codec", "enum"), codecs),
            (properties + ("xHeaders", "maxProperties"), orders.MAX_X_HEADERS),
            (properties + ("xHeaders", "propertyNames", "pattern"), anchored(orders.X_HEADER_RE)),
            (properties + ("xHeaders", "additionalProperties", "maxLength"), orders.MAX_X_HEADER_VALUE),
            (properties + ("xHeaders", "additionalProperties", "pattern"), NO_CONTROL),
        ]
    return rows


def code_values_in_prose() -> list[tuple[Where, str]]:
    """
    The descriptions of the document that quote a constant of the code.

    @return: (where in the document, the words that must be there) pairs.
    """
    rows: list[tuple[Where, str]] = [
        (("info", "description"), f"Request bodies are at most {MAX_BODY} bytes"),
        (("info", "description"), f"with {JWT_LEEWAY} s of skew"),
        (("components", "responses", "PayloadTooLarge", "description"), f"larger than {MAX_BODY} bytes"),
        (("paths", "/{domain}/sessions/{sessionId}", "get", "description"), f"the last {KEEP_ENDED} ended"),
        (("paths", "/{domain}/sessions/{sessionId}", "get", "description"), f"at most {KEEP_ENDED_FOR:.0f} s"),
    ]
    for name in ("StartSIPRecForward", "StartSIPRecForwardRequest"):
        where = SCHEMAS + (name, "properties", "xHeaders", "description")
        rows += [
            (where, f"at most {orders.MAX_X_HEADERS}, values"),
            (where, f"at most {orders.MAX_X_HEADER_VALUE} bytes"),
        ]
    return rows


def documented_operations() -> set[tuple[str, str]]:
    """
    @return: Every (path template, method) of the document's C{paths}.
    """
    return {(path, method) for path, item in OPENAPI["paths"].items() for method in item if method in METHODS}


def routed_operations() -> set[tuple[str, str]]:
    """
    The Klein app's routes as OpenAPI (path template, method) pairs:
    C{<string:session_id>} becomes C{{sessionId}}, an C{any(a,b)}
    converter one path per alternative; HEAD and OPTIONS (added by the
    router) are left out.

    @return: The pairs.
    """

    def camel(name: str) -> str:
        first, *rest = name.split("_")
        return first + "".join(part.title() for part in rest)

    out = set()
    for rule in ApiServer.app.url_map.iter_rules():
        templates = [rule.rule]
        choice = re.search(r"<any\(([^)]*)\):\w+>", rule.rule)
        if choice:
            alternatives = [a.strip().strip("'\"") for a in choice.group(1).split(",")]
            templates = [rule.rule.replace(choice.group(0), a) for a in alternatives]
        for template in templates:
            path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "{" + camel(m.group(1)) + "}", template)
            for method in rule.methods or ():
                if method not in ("HEAD", "OPTIONS"):
                    out.add((path, method.lower()))
    return out


class DocumentTests(SynchronousTestCase):
    """
    Tests for the document itself.
    """

    def test_valid_openapi(self) -> None:
        """
        The document is valid OpenAPI 3.1.
        """
        self.assertEqual(OPENAPI["openapi"], "3.1.0")
        validate_openapi(OPENAPI)

    def test_schemas_valid(self) -> None:
        """
        Every component schema is a valid JSON Schema 2020-12.
        """
        for name, schema in OPENAPI["components"]["schemas"].items():
            with self.subTest(name):
                Draft202012Validator.check_schema(schema)

    def test_repository_copy(self) -> None:
        """
        docs/openapi.json is the document (regenerate it with python -m aiconnect.api > docs/openapi.json).
        """
        with DOCUMENT_COPY.open(encoding="utf-8") as f:
            copy = json.load(f)
        self.assertTrue(
            copy == OPENAPI,
            "docs/openapi.json differs from aiconnect.api.OPENAPI: "
            "run python -m aiconnect.api > docs/openapi.json",
        )

    def test_served(self) -> None:
        """
        GET /openapi.json serves the document.
        """
        treq = StubTreq(ApiServer(make_config(self)).app.resource())
        response = self.successResultOf(treq.get("http://api.example/openapi.json"))
        self.assertEqual(response.code, 200)
        self.assertEqual(self.successResultOf(treq.json_content(response)), OPENAPI)

    def test_every_route_documented(self) -> None:
        """
        Every route of the app appears in the document with its method.
        """
        missing = routed_operations() - documented_operations()
        self.assertEqual(missing, set())

    def test_every_operation_routed(self) -> None:
        """
        Every operation of the document is routed (neither 404 nor 405 from the router).
        """
        self.assertEqual(documented_operations() - routed_operations(), set())
        adapter = ApiServer.app.url_map.bind("api.example")
        for path, method in sorted(documented_operations()):
            concrete = path.replace("{domain}", DOMAIN).replace("{sessionId}", "ses_x").replace("{recordingId}", REC_ID)
            with self.subTest(f"{method.upper()} {path}"):
                try:
                    adapter.match(concrete, method.upper())
                except (NotFound, MethodNotAllowed) as e:
                    self.fail(f"{method.upper()} {concrete}: {e}")

    def test_tenant_operations_secured(self) -> None:
        """
        Operations under /{domain} declare the bearer schemes, a 401 and a 403; those under /admin the admin token and a 401; the others need no credential.
        """
        for path, method in documented_operations():
            operation = OPENAPI["paths"][path][method]
            with self.subTest(f"{method.upper()} {path}"):
                if path.startswith("/{domain}/"):
                    self.assertEqual(operation["security"], [{"apiToken": []}, {"jwt": []}])
                    self.assertIn("401", operation["responses"])
                    self.assertEqual(operation["responses"]["403"], {"$ref": "#/components/responses/Forbidden"})
                elif path.startswith("/admin/"):
                    self.assertEqual(operation["security"], [{"adminToken": []}])
                    self.assertIn("401", operation["responses"])
                else:
                    self.assertEqual(operation["security"], [])

    def test_path_parameters_declared(self) -> None:
        """
        Each path template parameter is declared as a required path parameter.
        """
        for path, method in documented_operations():
            operation = OPENAPI["paths"][path][method]
            declared = {
                p["name"] for p in (resolve(p) for p in operation.get("parameters", [])) if p["in"] == "path"
            }
            with self.subTest(f"{method.upper()} {path}"):
                self.assertEqual(declared, set(re.findall(r"{(\w+)}", path)))


class ShippingTests(SynchronousTestCase):
    """
    The document is a file of the package, shipped with it and printed as it
    is.
    """

    def document_text(self) -> str:
        """
        @return: The text of the package's document file.
        """
        return files("aiconnect.api").joinpath(DOCUMENT_NAME).read_text(encoding="utf-8")

    def test_canonical_text(self) -> None:
        """
        The document file is written as render() writes it (two-space indent, UTF-8, a final newline).
        """
        self.assertEqual(self.document_text(), render(OPENAPI))

    def test_package_data(self) -> None:
        """
        setup.cfg ships every package under aiconnect/ and the document, so a non-editable install serves it.
        """
        setup = configparser.ConfigParser()
        setup.read(ROOT / "setup.cfg", encoding="utf-8")
        packages = setup["options"]["packages"].split()
        found = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "aiconnect").rglob("__init__.py")}
        self.assertIn("aiconnect.api", found)
        self.assertEqual(sorted(found - set(packages)), [])
        self.assertIn(DOCUMENT_NAME, setup["options.package_data"]["aiconnect.api"].split())

    def test_main(self) -> None:
        """
        python -m aiconnect.api prints the document as the file holds it.
        """
        result = subprocess.run(
            [sys.executable, "-m", "aiconnect.api"], cwd=ROOT, capture_output=True, check=True, timeout=120
        )
        self.assertEqual(result.stdout.decode("utf-8"), self.document_text())


class CodeValuesTests(SynchronousTestCase):
    """
    What the document states about limits, patterns, enumerations and event
    names is what the code does: the document cannot drift from the
    constants it restates.
    """

    def test_values(self) -> None:
        """
        Each limit, pattern and enumeration of the document equals the code's constant.
        """
        check_values(self, code_values())

    def test_prose(self) -> None:
        """
        Each description quoting a limit of the code quotes its current value.
        """
        check_prose(self, code_values_in_prose())

    def test_reasons(self) -> None:
        """
        The documented stoppedBy and reason values are the code's, none missing but the known gap.
        """
        for where, prefix in REASONS:
            sent = {value for name, value in vars(events).items() if name.startswith(prefix)}
            documented = at(where)
            with self.subTest(prefix):
                self.assertEqual(len(documented), len(set(documented)))
                self.assertEqual(set(documented) - sent, set())
                self.assertEqual(sent - set(documented), UNDOCUMENTED_REASONS)

    def test_patterns_behave_like_the_code(self) -> None:
        """
        The documented patterns accept and refuse what the code's regexes do, on samples of each side.
        """
        party = at(SCHEMAS + ("Party", "properties"))
        samples = ["alice", "a b", "a\tb", "a\nb", "x\x7f", "label-1.A_b", "X-Foo", "x-bar", "Y-Foo", "é", ""]
        checks = [
            (party["label"]["pattern"], lambda text: orders.LABEL_RE.match(text) is not None),
            (party["user"]["pattern"], lambda text: abnf.USER_RE.match(text) is not None),
            (party["name"]["pattern"], lambda text: orders.CONTROL_RE.search(text) is None),
            (
                at(SCHEMAS + ("StartSIPRecForward", "properties", "xHeaders", "propertyNames", "pattern")),
                lambda text: orders.X_HEADER_RE.match(text) is not None,
            ),
        ]
        for pattern, accepted in checks:
            for text in samples:
                with self.subTest(f"{pattern} {text!r}"):
                    self.assertEqual(re.search(pattern, text) is not None, accepted(text))


class ResponseConformanceTests(SynchronousTestCase):
    """
    Real answers of an L{ApiServer} validate against the documented
    responses, and every documented response is produced by some request.
    The output routes (streams, recordings, pause) are answered by a server
    over a fake runner (the runner's side is tested with the runner).
    """

    #: The operations answered by the server over real sessions.
    FORWARD_SERVER = (
        "/health",
        "/metrics",
        "/openapi.json",
        "/{domain}/sessions",
        "/{domain}/sessions/{sessionId}",
        "/{domain}/startsiprecforward",
        "/{domain}/stopsiprecforward",
    )

    def setUp(self) -> None:
        """
        A server over two tenants: an active session with a forwarder that
        leaves forwards trying, an ended one, and another tenant's.
        """
        self.config = make_config(self)
        self.registry = CallRegistry()
        self.call = make_call(self.config)
        self.call.leg_factory = RecordingForwarder()
        ended = make_call(self.config, session_id="ses_ended")
        for call in (self.call, ended, make_call(self.config, OTHER_DOMAIN, "ses_other")):
            self.registry.add(call)
        ended.report(InboundEnded, reason="bye")
        self.assertIs(ended.state, CallState.ENDED)
        server = ApiServer(self.config, self.registry, reactor=Clock(), stats_providers={"registry": self.registry.counts})
        self.treq = StubTreq(server.app.resource())
        # The output routes, against a fake runner and stand-in files.
        self.runner = FakeOutputRunner(DOMAIN, "ses_test1")
        self.runner.outputs["forward"]["fwd_1"] = True
        self.files = FakeRecordingFiles(self)
        outputs = ApiServer(self.config, FakeRunnerRegistry(self.runner), reactor=Clock(), recording_files=self.files)
        self.outputs_treq = StubTreq(outputs.app.resource())
        self.outputs_server = outputs
        self.covered: set[tuple[str, str, str]] = set()

    def exchange(
        self,
        method: str,
        template: str,
        status: int,
        body: Any = None,
        data: bytes | None = None,
        token: str | None = TOKEN,
        session_id: str = "ses_test1",
        recording_id: str = REC_ID,
    ) -> Any:
        """
        Make a request for a documented operation, check the status, and
        validate the answer against the documented response: content type,
        JSON schema, documented headers.

        @param method: The method, lower case.
        @param template: The documented path template.
        @param status: The expected status.
        @param body: A JSON body, if any (also checked against the request
            schema when the answer is not 400).
        @param data: Raw body bytes instead.
        @param token: The bearer credential, or L{None}.
        @param session_id: The value of C{{sessionId}} in the path.
        @param recording_id: The value of C{{recordingId}} in the path.
        @return: The decoded JSON answer, or the text of a non-JSON one.
        """
        operation = OPENAPI["paths"][template][method]
        path = template.replace("{domain}", DOMAIN).replace("{sessionId}", session_id)
        path = path.replace("{recordingId}", recording_id)
        # The output routes are served by the server over the fake runner.
        client = self.outputs_treq if template not in self.FORWARD_SERVER else self.treq
        headers = bearer(token) if token is not None else {}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            if status not in (400, 413):
                schema = operation["requestBody"]["content"]["application/json"]["schema"]
                errors = [e.message for e in validator(schema).iter_errors(body)]
                self.assertEqual(errors, [], f"request of {method.upper()} {template} does not match its schema")
        response = self.successResultOf(
            client.request(method.upper(), "http://api.example" + path, headers=headers, data=data)
        )
        raw = self.successResultOf(client.content(response))
        self.covered.add((template, method, str(status)))
        return conform(self, method, template, status, response, raw)

    def test_responses(self) -> None:
        """
        Every documented response of every operation is produced by a real request and matches its schema.
        """
        ok_order = {"sessionId": "ses_test1", "uri": FORWARD_URI}
        too_large = json.dumps({"sessionId": "ses_test1", "pad": "x" * MAX_BODY}).encode()
        self.exchange("get", "/health", 200)
        self.exchange("get", "/ready", 200)
        self.outputs_server.readiness = {"sip": lambda: None, "database": lambda: "not writable: disk I/O error"}
        self.assertEqual(self.exchange("get", "/ready", 503)["notReady"], ["database"])
        metrics = self.exchange("get", "/metrics", 200)
        self.assertIn("aiconnect_registry_active 2.0\n", metrics)
        self.exchange("get", "/openapi.json", 200)

        # Forwards first, so that the session described below has some.
        start = "/{domain}/startsiprecforward"
        first = self.exchange("post", start, 200, ok_order)["forwardId"]
        full = {
            "sessionId": "ses_test1",
            "uri": f"sip:secure@{DOMAIN}",
            "codec": "PCMU",
            "srtp": True,
            "caller": {"name": "Alice Andersson", "user": "alice", "label": "labelA"},
            "calledParty": {"name": "Support IVR", "user": "support", "label": "labelB"},
            "xHeaders": {"X-Correlation-Id": "a3b47c1e", "X-Tenant": "acme-cc"},
            "sipRecForwardReferenceId": {"ticketId": 98765},
            "usePrivateIp": False,
        }
        second = self.exchange("post", start, 200, full)["forwardId"]
        self.call.report(ForwardAnswered, forward_id=first, target="sip:127.0.0.1:5070;transport=udp", codec="PCMA", srtp=False)
        self.exchange("post", start, 400, {**ok_order, "codec": "G729"})
        self.exchange("post", start, 400, data=b"{")
        self.exchange("post", start, 401, ok_order, token=None)
        self.exchange("post", start, 404, {**ok_order, "sessionId": "ses_other"})
        self.exchange("post", start, 409, {**ok_order, "sessionId": "ses_ended"})
        self.exchange("post", start, 413, data=too_large)

        sessions = self.exchange("get", "/{domain}/sessions", 200)
        self.assertEqual([s["sessionId"] for s in sessions["sessions"]], ["ses_test1"])
        self.exchange("get", "/{domain}/sessions", 401, token="tok-wrong")
        one = "/{domain}/sessions/{sessionId}"
        session = self.exchange("get", one, 200)["session"]
        self.assertEqual({f["forwardId"] for f in session["forwards"]}, {first, second})
        self.exchange("get", one, 200, session_id="ses_ended")
        self.exchange("get", one, 404, session_id="ses_other")
        self.exchange("get", one, 401, token=None)

        stop = "/{domain}/stopsiprecforward"
        stopped = self.exchange("post", stop, 200, {"sessionId": "ses_test1", "forwardId": first})
        self.assertEqual(stopped["stopped"], [first])
        self.exchange("post", stop, 200, {"sessionId": "ses_test1"})
        self.exchange("post", stop, 400, {"sessionId": "ses_test1", "forwardId": 1})
        self.exchange("post", stop, 401, {"sessionId": "ses_test1"}, token="tok-wrong")
        self.exchange("post", stop, 404, {"sessionId": "ses_test1", "forwardId": "fwd_nope"})
        self.exchange("post", stop, 413, data=too_large)

        self.output_responses(too_large)
        documented = {
            (path, method, status)
            for path, method in documented_operations()
            for status in OPENAPI["paths"][path][method]["responses"]
        }
        # The provisioning answers and the 403s: tests.api.test_provisioning;
        # the 503s of several nodes: tests.cluster_rest.
        self.assertEqual(documented - self.covered, SOCKET_RESPONSES | TRUNK_RESPONSES | PROVISIONING_RESPONSES | FORBIDDEN_RESPONSES | CLUSTER_RESPONSES)

    def output_responses(self, too_large: bytes) -> None:
        """
        Exchange every documented answer of the output routes but the file
        downloads (L{SOCKET_RESPONSES}).

        @param too_large: A body over the size limit.
        """
        schemas = OPENAPI["components"]["schemas"]
        for kind, example in (("stream", "StartStreamRequest"), ("recording", "StartRecordingRequest")):
            start, stop = f"/{{domain}}/start{kind}", f"/{{domain}}/stop{kind}"
            id_field = kind + "Id"
            order = schemas[example]["examples"][0] | {"sessionId": "ses_test1"}
            output_id = self.exchange("post", start, 200, order)[id_field]
            self.exchange("post", start, 400, {**order, "tracks": "stereo"})
            self.exchange("post", start, 401, order, token=None)
            self.exchange("post", start, 404, {**order, "sessionId": "ses_other"})
            self.runner.refusal = OrderRefused("ended", "the session has ended")
            self.exchange("post", start, 409, order)
            self.runner.refusal = None
            self.exchange("post", start, 413, data=too_large)
            self.exchange("post", stop, 200, {"sessionId": "ses_test1", id_field: output_id})
            self.exchange("post", stop, 200, {"sessionId": "ses_test1"})
            self.exchange("post", stop, 400, {"sessionId": "ses_test1", id_field: 5})
            self.exchange("post", stop, 401, {"sessionId": "ses_test1"}, token="tok-wrong")
            self.exchange("post", stop, 404, {"sessionId": "ses_test1", id_field: "nope"})
            self.exchange("post", stop, 413, data=too_large)
        for action in ("pause", "resume"):
            template = "/{domain}/" + action
            answer = self.exchange("post", template, 200, {"sessionId": "ses_test1"})
            self.assertEqual(answer[action + "d"]["forwards"], ["fwd_1"])
            self.exchange("post", template, 200, schemas["PauseRequest"]["examples"][1] | {"sessionId": "ses_test1", "streamIds": ["str_1"]})
            self.exchange("post", template, 400, {"sessionId": "ses_test1", "streamIds": "str_1"})
            self.exchange("post", template, 401, {"sessionId": "ses_test1"}, token=None)
            self.exchange("post", template, 404, {"sessionId": "ses_test1", "forwardIds": ["fwd_nope"]})
            self.exchange("post", template, 413, data=too_large)
        file = "/{domain}/recordings/{recordingId}"
        self.files.add(DOMAIN, REC_ID, b"RIFF")
        self.exchange("get", file, 401, token=None)
        self.exchange("get", file, 404, recording_id="rec_20261202_0000000000000000")
        self.files.busy.add(REC_ID)
        self.exchange("delete", file, 409)
        self.files.busy.clear()
        self.exchange("delete", file, 200)
        self.exchange("delete", file, 404)
        self.exchange("delete", file, 401, token="tok-wrong")


class RequestSchemaTests(SynchronousTestCase):
    """
    The documented request schemas are as strict as the server where a
    schema can be.
    """

    def test_bad_orders_refused(self) -> None:
        """
        Every invalid order the server refuses (except the configuration-dependent ones) fails the schema.
        """
        schema = component("StartSIPRecForwardRequest")
        for why, fields, _ in BAD_ORDER_FIELDS:
            if why in SEMANTIC_ONLY:
                continue
            with self.subTest(why):
                self.assertFalse(schema.is_valid({"sessionId": "ses_test1", **fields}))

    def test_good_orders_accepted(self) -> None:
        """
        The document's examples and the alias forms validate.
        """
        schema = component("StartSIPRecForwardRequest")
        examples = OPENAPI["components"]["schemas"]["StartSIPRecForwardRequest"]["examples"]
        self.assertTrue(examples)
        for example in examples:
            self.assertEqual([e.message for e in schema.iter_errors(example)], [])
        aliased = {
            "sessionId": "s",
            "uri": FORWARD_URI,
            "callingParty": {"name": "A"},
            "callee": {"label": "b"},
            "caller": None,
            "xHeaders": None,
            "sipRecForwardReferenceId": None,
        }
        self.assertEqual([e.message for e in schema.iter_errors(aliased)], [])

    def test_new_call_answer(self) -> None:
        """
        A newCall answer may hold one startSIPRecForward object or a list, and nothing at all.
        """
        schema = component("NewCallAnswer")
        order = dict(OPENAPI["components"]["schemas"]["StartSIPRecForwardRequest"]["examples"][0])
        del order["sessionId"]
        for answer in ({"startSIPRecForward": order}, {"startSIPRecForward": [order, order]}, {}):
            self.assertEqual([e.message for e in schema.iter_errors(answer)], [])
        self.assertFalse(schema.is_valid({"startSIPRecForward": {"codec": "PCMU"}}))



class CallbackSchemaTests(SynchronousTestCase):
    """
    The events the server sends validate against the C{events} webhook.
    """

    def event_schema(self) -> Draft202012Validator:
        """
        @return: A validator for the C{events} webhook request body.
        """
        post = OPENAPI["webhooks"]["events"]["post"]
        return validator(post["requestBody"]["content"]["application/json"]["schema"])

    def test_events_as_sent(self) -> None:
        """
        Each kind of event, as the outbox stores it for sending, matches the documented schema.
        """
        outbox = EventOutbox(":memory:", clock=lambda: 1714566896.789)
        self.addCleanup(outbox.close)
        built = [
            events.session_started(
                "ses_1", tenant=DOMAIN, call_id="c@h", from_uri="sip:a@h", to_uri="sip:b@h", streams=["1", "2"]
            , now=1700000000.0),
            events.siprec_forward_started(
                "ses_1",
                tenant=DOMAIN,
                forward_id="fwd_1",
                uri=FORWARD_URI,
                target="sip:127.0.0.1:5070;transport=udp",
                codec="PCMU",
                srtp=False,
                reference_id={"ticketId": 1},
            now=1700000000.0,),
            events.siprec_forward_failed(
                "ses_1", tenant=DOMAIN, forward_id="fwd_2", uri=FORWARD_URI, reason="not implemented"
            , now=1700000000.0),
            events.siprec_forward_stopped(
                "ses_1",
                tenant=DOMAIN,
                forward_id="fwd_1",
                uri=FORWARD_URI,
                target="sip:127.0.0.1:5070;transport=udp",
                stopped_by=events.STOPPED_BY_API,
                stats={"packetsSent": 10},
            now=1700000000.0,),
            events.session_completed("ses_1", tenant=DOMAIN, reason=events.COMPLETED_INBOUND_BYE, duration=3.5, now=1700000000.0),
        ]
        envelope = {"session_id": "ses_1", "tenant": DOMAIN, "now": 1700000000.0}
        stream = {"stream_id": "str_1", "url": "wss://ai.example.com/a", "reference_id": {"t": 1}}
        recording = {"recording_id": "rec_20231114_0123456789abcdef", "reference_id": None}
        stopped = {"file": "/r/x.wav", "duration": 1.5, "bytes": 24044, "sha256": "0" * 64, "channels": 2,
                   "encoding": "L16", "pauses": [{"start": 0.2, "end": 0.4}], "stoppedBy": "api"}  # fmt: skip
        built += [
            e.to_json()
            for e in (
                events.StreamStarted(**envelope, **stream),
                events.StreamFailed(**envelope, **stream, reason="HTTP 403"),
                events.StreamStopped(**envelope, **stream, stopped_by="api", stats={"frames": 75}),
                events.RecordingStarted(**envelope, **recording, details={"file": "/r/x.wav", "tracks": "both", "encoding": "L16"}),
                events.RecordingStopped(**envelope, **recording, details=stopped),
                events.RecordingFailed(**envelope, **recording, details={"reason": "disk full"}),
                events.RecordingUploaded(**envelope, **recording, details={"url": "https://b.example/x.wav", "status": 200}),
                events.SessionPaused(**envelope, forward_ids=("fwd_1",), session=True),
                events.SessionResumed(**envelope, stream_ids=("str_1",)),
                events.SiprecForwardResumed(
                    **envelope, forward_id="fwd_1", uri=FORWARD_URI, target="sip:127.0.0.1:5072;transport=tcp",
                    previous_target="sip:127.0.0.1:5070;transport=tcp", reason="transport: connection lost", gap_ms=412,
                ),
            )
        ]
        for payload in built:
            outbox.emit(DOMAIN, "ses_1", payload)
        sent = [json.loads(e.body) for e in outbox.pending()]
        self.assertEqual([e["event"] for e in sent], list(events.EVENT_NAMES))
        schema = self.event_schema()
        for event in sent:
            with self.subTest(event["event"]):
                self.assertEqual([e.message for e in schema.iter_errors(event)], [])

    def test_new_call_request(self) -> None:
        """
        The newCall request the SRS builds (with RFC 7865 metadata and X- headers) matches the documented schema.
        """
        config = make_config(self, with_jwt=False)
        call = make_call(config, acked=False).call
        call.metadata = parse_metadata((DATA / "rfc7865-s8.1-complete-metadata.xml").read_bytes())
        call.x_headers = [("X-Correlation-Id", "a3b47c1e")]
        # The one place that shapes newCall (the SRS posts it).
        payload = json.loads(json.dumps(new_call_payload(call)))
        self.assertTrue(payload["participants"])
        post = OPENAPI["webhooks"]["newCall"]["post"]
        schema = validator(post["requestBody"]["content"]["application/json"]["schema"])
        self.assertEqual([e.message for e in schema.iter_errors(payload)], [])
        self.assertEqual(schema.is_valid({**payload, "participants": [{"name": "x"}]}), False)

    def test_documented_examples(self) -> None:
        """
        The event examples of docs/events.md match the schema.
        """
        blocks = re.findall(r"```json\n(.*?)```", EVENTS_DOC.read_text(encoding="utf-8"), re.S)
        examples = [json.loads(b) for b in blocks]
        examples = [e for e in examples if isinstance(e, dict) and "event" in e]
        self.assertEqual({e["event"] for e in examples}, set(events.EVENT_NAMES))
        schema = self.event_schema()
        for example in examples:
            with self.subTest(example["event"]):
                self.assertEqual([e.message for e in schema.iter_errors(example)], [])

    def test_wrong_event_refused(self) -> None:
        """
        An event missing a field of its kind, or of an unknown kind, fails the schema.
        """
        schema = self.event_schema()
        event = events.session_completed("ses_1", tenant=DOMAIN, reason="inboundBye", duration=1.0, now=1700000000.0)
        event["sequence"] = 1
        self.assertTrue(schema.is_valid(event))
        self.assertFalse(schema.is_valid({k: v for k, v in event.items() if k != "reason"}))
        self.assertFalse(schema.is_valid({**event, "event": "SOMETHINGELSE"}))
