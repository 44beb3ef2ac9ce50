# -*- test-case-name: tests.test_openapi -*-
"""
The OpenAPI 3.1 document of the REST API and of the callbacks (the
C{webhooks} C{newCall} and C{events}).

The document is the reviewed file C{openapi.json} beside this module,
shipped as package data (C{setup.cfg}), served on C{GET /openapi.json} and
copied to C{docs/openapi.json}.  Edit the file itself, formatted as
L{render} writes it.  C{tests.test_openapi} checks that it is valid, that
it and the routes agree both ways, that real answers and events match it,
and that the limits, patterns and enumerations it states equal the
constants of the code they describe.
"""

from __future__ import annotations

import json
import sys
from importlib.resources import files
from typing import Any

#: The file name of the document inside this package.
DOCUMENT_NAME = "openapi.json"


def render(document: dict[str, Any]) -> str:
    """
    The canonical text of the document: JSON indented by two spaces, UTF-8
    characters as they are, keys in document order, a final newline.

    @param document: The document.
    @return: Its text.
    """
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def load_document() -> dict[str, Any]:
    """
    Read the document from the package data.

    @return: The document (JSON values only).
    """
    text = files("aiconnect.api").joinpath(DOCUMENT_NAME).read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


#: The OpenAPI 3.1 document: served on C{GET /openapi.json}, copied to
#: C{docs/openapi.json}.  Treat as read-only.
OPENAPI: dict[str, Any] = load_document()

#: The version of the API contract (C{info.version} of L{OPENAPI}); not the
#: software version, which C{GET /health} reports.
API_VERSION: str = OPENAPI["info"]["version"]


def main() -> None:
    """
    Write L{OPENAPI} to standard output:
    C{python -m aiconnect.api > docs/openapi.json}.
    """
    sys.stdout.write(render(OPENAPI))
