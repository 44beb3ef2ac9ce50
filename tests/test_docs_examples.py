"""
The JSON examples of the documentation agree with the implementation's
OpenAPI document (L{aiconnect.api.OPENAPI}).

Every C{```json} block of C{docs/*.md} (and every C{.. code-block:: json}
of C{README.rst}) must parse as one JSON value, and:

  - an event (an object whose C{event} is one of
    L{aiconnect.events.EVENT_NAMES}) must match that event's schema;
  - a REST answer (an object with C{success}) must match one of the
    documented JSON responses;
  - any other object must match one of the documented bodies: the request
    bodies, C{NewCall}, C{NewCallAnswer}, C{StartSIPRecForward},
    C{StreamOrder}, C{RecordingOrder}.

Conventions for examples that are not whole documents (docs/api.md says
so too): a C{<!-- partial -->} line right before a C{```json} block
marks an excerpt (it must still parse, but is not held to a schema); a
C{<!-- schema: Name -->} line names the component schema it must match;
a C{```jsonc} block is illustrative (elisions, several messages, comments)
and is not parsed.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.api import OPENAPI
from aiconnect.call_mandatory import REJECT_PHRASE, REJECT_STATUS
from aiconnect.events import EVENT_NAMES
from tests.openapi_support import component, resolve, validator

ROOT = Path(__file__).resolve().parent.parent

#: A fenced block, with the HTML comment on the line before it, if any.
_FENCE = re.compile(r"(?:^<!--\s*(?P<mark>.*?)\s*-->\n)?^```(?P<lang>[a-z]*)\n(?P<body>.*?)^```", re.M | re.S)
#: A reStructuredText JSON code block and its indented body.
_RST = re.compile(r"^\.\. code-block:: json\n\n(?P<body>(?:(?:[ \t]+.*)?\n)+)", re.M)

#: The component schemas an example that is neither an event nor an answer
#: may be (a C{newCall} answer, which takes any keys, only when it holds
#: one of L{ANSWER_KEYS}).
BODIES = ("NewCall", "StartSIPRecForward", "StreamOrder", "RecordingOrder")
#: The keys that make an object a C{newCall} answer.
ANSWER_KEYS = ("startSIPRecForward", "startStream", "startRecording")


#: A forward target as events, the session API and the trunk health API
#: name it (L{aiconnect.siprec.dialer.peer_text}).
TARGET = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[^\s;:\[\]/]+):\d+;transport=(?:udp|tcp|tls)$")
#: Paths of one machine that must not appear in the documentation.
MACHINE_PATHS = re.compile(r"(?<![\w.])/(?:tmp|home|root|work|Users|private/var)/")
#: A row of the refusals table of docs/events.md: `<status> <reason phrase>`.
_REFUSAL_ROW = re.compile(r"^\| `(\d{3}) ([^`]+)` \|", re.M)


@dataclass(frozen=True)
class Example:
    """
    One JSON example: where it is, its text, its mark (C{partial},
    C{schema: Name} or C{""}).
    """

    where: str
    text: str
    mark: str


def examples() -> list[Example]:
    """
    Every C{```json} block of docs/*.md and C{code-block:: json} of
    README.rst (C{```jsonc} blocks are not examples to check).
    """
    found = []
    for path in sorted((ROOT / "docs").glob("*.md")):
        text = path.read_text()
        for match in _FENCE.finditer(text):
            if match.group("lang") == "json":
                line = text.count("\n", 0, match.start("body"))
                found.append(Example("%s:%d" % (path.name, line), match.group("body"), match.group("mark") or ""))
    readme = (ROOT / "README.rst").read_text()
    for match in _RST.finditer(readme):
        line = readme.count("\n", 0, match.start("body"))
        found.append(Example("README.rst:%d" % (line,), match.group("body"), ""))
    return found


def event_schemas() -> dict[str, str]:
    """
    Event name -> the name of its component schema (from the C{Event} union).
    """
    out = {}
    for ref in OPENAPI["components"]["schemas"]["Event"]["oneOf"]:
        name = ref["$ref"].rsplit("/", 1)[1]
        schema = OPENAPI["components"]["schemas"][name]
        parts = [schema] + schema.get("allOf", [])
        for part in parts:
            const = resolve(part).get("properties", {}).get("event", {}).get("const")
            if const is not None:
                out[const] = name
    return out


def response_schemas() -> list[dict[str, Any]]:
    """
    The JSON schema of every documented response of every operation.
    """
    out = []
    for item in OPENAPI["paths"].values():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for response in operation["responses"].values():
                schema = resolve(response).get("content", {}).get("application/json", {}).get("schema")
                # Only the documented objects: a bare {"type": "object"}
                # (the OpenAPI document itself) would take anything.
                if schema is not None and "$ref" in schema and schema not in out:
                    out.append(schema)
    return out


def body_schemas() -> list[dict[str, Any]]:
    """
    The request bodies of every operation and the callback bodies (L{BODIES}).
    """
    out = [{"$ref": "#/components/schemas/" + name} for name in BODIES]
    for item in OPENAPI["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                schema = resolve(operation["requestBody"])["content"]["application/json"]["schema"]
                if schema not in out:
                    out.append(schema)
    return out


def problems(schema: dict[str, Any], value: Any) -> list[str]:
    """
    Why C{value} does not match C{schema} (empty when it does).
    """
    return ["%s: %s" % ("/".join(map(str, e.absolute_path)) or "(top)", e.message) for e in validator(schema).iter_errors(value)]


def closest(schemas: list[dict[str, Any]], value: Any) -> list[str]:
    """
    The problems of C{value} against the schema it fits best (empty when
    one matches).
    """
    best: list[str] | None = None
    for schema in schemas:
        found = problems(schema, value)
        if not found:
            return []
        if best is None or len(found) < len(best):
            best = found
    return best or ["no schema"]


class DocsExamplesTests(SynchronousTestCase):
    """
    The JSON examples of docs/ and README.rst.
    """

    def test_found(self) -> None:
        """
        The examples are found (the pattern did not silently stop matching).
        """
        found = examples()
        self.assertGreater(len(found), 25)
        self.assertTrue(any(e.where.startswith("events.md") for e in found))
        self.assertTrue(any(e.where.startswith("api.md") for e in found))

    def test_parse(self) -> None:
        """
        Every JSON example parses as one JSON value.
        """
        for example in examples():
            with self.subTest(example.where):
                try:
                    json.loads(example.text)
                except ValueError as e:
                    self.fail("%s does not parse: %s" % (example.where, e))

    def test_match_schema(self) -> None:
        """
        Every example that is not marked partial matches its schema: events their event's, answers a documented response, other objects a documented body.
        """
        events = event_schemas()
        self.assertEqual(set(events), set(EVENT_NAMES))
        answers, bodies = response_schemas(), body_schemas()
        failures = []
        for example in examples():
            if example.mark == "partial":
                continue
            value = json.loads(example.text)
            if example.mark.startswith("schema:"):
                found = problems({"$ref": "#/components/schemas/" + example.mark.split(":", 1)[1].strip()}, value)
            elif isinstance(value, dict) and value.get("event") in events:
                found = problems({"$ref": "#/components/schemas/" + events[value["event"]]}, value)
            elif isinstance(value, dict) and "success" in value:
                found = closest(answers, value)
            elif isinstance(value, dict) and any(key in value for key in ANSWER_KEYS):
                found = problems({"$ref": "#/components/schemas/NewCallAnswer"}, value)
            else:
                found = closest(bodies, value)
            if found:
                failures.append("%s:\n    %s" % (example.where, "\n    ".join(found)))
        if failures:
            self.fail("examples that do not match their schema:\n" + "\n".join(failures))

    def test_conventions(self) -> None:
        """
        A mark is partial or names a component schema that exists; the conventions are documented in docs/api.md.
        """
        schemas = OPENAPI["components"]["schemas"]
        for example in examples():
            if example.mark and example.mark != "partial":
                self.assertTrue(example.mark.startswith("schema:"), example.where)
                self.assertIn(example.mark.split(":", 1)[1].strip(), schemas, example.where)
        api = (ROOT / "docs" / "api.md").read_text()
        for words in ("<!-- partial -->", "<!-- schema: ", "```jsonc"):
            self.assertTrue(words in api, "docs/api.md does not explain %s" % (words,))
        component("Event")


def targets_in(value: Any) -> list[str]:
    """
    Every C{target}, C{previousTarget} and C{targetsTried} string in a
    JSON value.
    """
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "trunk":
                continue  # a trunk's configured target (a name), not a resolved one
            if key in ("target", "previousTarget") and isinstance(item, str):
                found.append(item)
            elif key == "targetsTried" and isinstance(item, list):
                found.extend(item)
            else:
                found.extend(targets_in(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(targets_in(item))
    return found


def code_refusals() -> set[tuple[int, str]]:
    """
    The (status, reason phrase) of every refusal the SRS builds
    (C{service_unavailable(...)} and C{RemoteSipError(...)} with literal
    arguments in aiconnect/siprec/srs.py).
    """
    tree = ast.parse((ROOT / "aiconnect" / "siprec" / "srs.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or not node.args:
            continue
        first = node.args[0]
        if not isinstance(first, ast.Constant) or not isinstance(first.value, str):
            continue
        if node.func.id == "service_unavailable":
            found.add((503, first.value))
        elif node.func.id == "RemoteSipError" and len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
            found.add((int(node.args[1].value), first.value))
    return found


class DocsAgreeTests(SynchronousTestCase):
    """
    What the documentation states agrees with the code.
    """

    def test_target_format(self) -> None:
        """
        Every target in a JSON example is host:port;transport=x, as the code writes it, and docs/events.md says so.
        """
        self.assertIn("`host:port;transport=udp\\|tcp\\|tls`", (ROOT / "docs" / "events.md").read_text())
        seen = 0
        for example in examples():
            for target in targets_in(json.loads(example.text)):
                seen += 1
                self.assertRegex(target, TARGET, example.where)
        self.assertGreater(seen, 5)
        for bad in ("sip:203.0.113.25:5061;transport=tls", "203.0.113.25:5061", "host;transport=udp"):
            self.assertNotRegex(bad, TARGET)
        self.assertRegex("[2001:db8::5]:5061;transport=tls", TARGET)

    def test_refusal_wording(self) -> None:
        """
        The refusals table of docs/events.md lists exactly the status lines the SRS sends, and the mandatory-forward 503 is worded as the code words it.
        """
        text = (ROOT / "docs" / "events.md").read_text()
        documented = {(int(status), phrase) for status, phrase in _REFUSAL_ROW.findall(text)}
        self.assertEqual(documented, code_refusals())
        self.assertGreaterEqual(len(documented), 10)
        self.assertIn("`%d %s` with" % (REJECT_STATUS, REJECT_PHRASE), text)

    def test_no_machine_paths(self) -> None:
        """
        No document names a path of one machine (a temporary or home directory, a checkout).
        """
        for path in sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.rst"]:
            for number, line in enumerate(path.read_text().splitlines(), 1):
                self.assertIsNone(MACHINE_PATHS.search(line), "%s:%d: %s" % (path.name, number, line))
        self.assertIsNotNone(MACHINE_PATHS.search("BENCH_PROFILE=/tmp/relay.prof python"))
