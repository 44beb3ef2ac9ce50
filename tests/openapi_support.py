# -*- test-case-name: tests.test_openapi,tests.test_openapi_outputs -*-
"""
What the tests of the OpenAPI document (L{tests.test_openapi},
L{tests.test_openapi_outputs}) share: paths into the document, schema
validators with its references resolved, the code's regexes as anchored
JSON Schema patterns, and L{conform}, which checks an answer against its
documented response.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jsonschema import Draft202012Validator
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.api import OPENAPI
from aiconnect.siprec import orders

#: A path in the document: its keys, and indexes of lists.
Where = tuple[str | int, ...]

SCHEMAS: Where = ("components", "schemas")


def anchored(regex: re.Pattern[str]) -> str:
    """
    @param regex: One of the code's validation regexes, C{...\\Z}.
    @return: The same rule as an anchored JSON Schema pattern.
    """
    return "^" + regex.pattern.removesuffix("\\Z") + "$"


#: L{orders.CONTROL_RE} negated: a string without control characters (HTAB
#: allowed), as the document states it.
NO_CONTROL = "^" + orders.CONTROL_RE.pattern.replace("[", "[^", 1) + "*$"


def at(where: Where) -> Any:
    """
    @param where: A path in the document.
    @return: The value there.
    """
    node: Any = OPENAPI
    for key in where:
        node = node[key]
    return node


def check_values(test: SynchronousTestCase, rows: list[tuple[Where, Any]]) -> None:
    """
    Assert that each place of the document holds the code's value.

    @param test: The test asserting (one subtest per row).
    @param rows: (where in the document, the value the code has) pairs.
    """
    for where, expected in rows:
        with test.subTest("/".join(map(str, where))):
            test.assertEqual(at(where), expected)


def check_prose(test: SynchronousTestCase, rows: list[tuple[Where, str]]) -> None:
    """
    Assert that each description of the document quotes the code's value.

    @param test: The test asserting (one subtest per row).
    @param rows: (where in the document, the words that must be there) pairs.
    """
    for where, words in rows:
        with test.subTest("/".join(map(str, where))):
            test.assertIn(words, at(where))


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    """
    A JSON Schema 2020-12 validator (the dialect of OpenAPI 3.1) for a
    schema of the document, its C{#/components/...} references resolved.

    @param schema: A schema from L{OPENAPI}.
    @return: The validator, checking formats too.
    """
    rooted = {**schema, "components": OPENAPI["components"]}
    return Draft202012Validator(rooted, format_checker=Draft202012Validator.FORMAT_CHECKER)


def component(name: str) -> Draft202012Validator:
    """
    @return: A validator for C{#/components/schemas/<name>}.
    """
    return validator({"$ref": "#/components/schemas/" + name})


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """
    Follow a C{$ref} to C{#/components/...}.

    @param node: A response, parameter ... object, or a reference to one.
    @return: The object itself.
    """
    while "$ref" in node:
        target: Any = OPENAPI
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def conform(
    test: SynchronousTestCase, method: str, template: str, status: int, response: Any, raw: bytes
) -> Any:
    """
    Check an answer against the documented response of an operation:
    status, content type, documented headers, JSON schema.

    @param test: The test asserting.
    @param method: The method, lower case.
    @param template: The documented path template.
    @param status: The expected status.
    @param response: The treq response.
    @param raw: Its body.
    @return: The decoded JSON answer, or the text of a non-JSON one.
    """
    operation = OPENAPI["paths"][template][method]
    label = f"{method.upper()} {template} -> {response.code}"
    test.assertEqual(response.code, status, f"{label}: {raw[:300]!r}")
    documented = operation["responses"].get(str(status))
    test.assertIsNotNone(documented, f"{label} is not documented")
    documented = resolve(documented)
    content_type = (response.headers.getRawHeaders(b"content-type") or [b""])[0].decode()
    media_type = content_type.split(";")[0].strip()
    test.assertIn(media_type, documented.get("content", {}), f"{label}: {content_type} not documented")
    for name in documented.get("headers", {}):
        test.assertTrue(response.headers.hasHeader(name.encode()), f"{label}: no {name} header")
    if media_type != "application/json":
        return raw.decode("utf-8")
    decoded = json.loads(raw)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator(documented["content"][media_type]["schema"]).iter_errors(decoded)
    ]
    test.assertEqual(errors, [], f"{label}: answer does not match the documented schema")
    return decoded
