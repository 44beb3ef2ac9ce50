"""
The media package's pure modules stay pure, and its adapter never reaches
for the global reactor (STYLE s2: "Where the sans-IO core ends").
"""

from __future__ import annotations

import ast
import os

from twisted.trial.unittest import SynchronousTestCase

import aiconnect.media

PACKAGE = os.path.dirname(aiconnect.media.__file__)
PURE = ("rtp.py", "g711.py", "mixer.py", "ports.py")
FORBIDDEN = ("twisted", "socket", "select", "asyncio", "time")


def _imports(path: str) -> set[str]:
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


class PurityTests(SynchronousTestCase):
    """
    Import rules, checked on the source.
    """

    def test_pure_modules(self) -> None:
        """
        rtp, g711, mixer and ports import no Twisted, sockets or clocks.
        """
        for name in PURE:
            for imported in _imports(os.path.join(PACKAGE, name)):
                root = imported.split(".")[0]
                self.assertNotIn(root, FORBIDDEN, f"{name} imports {imported}")

    def test_no_global_reactor(self) -> None:
        """
        No media module imports twisted.internet.reactor.
        """
        for name in os.listdir(PACKAGE):
            if name.endswith(".py"):
                self.assertNotIn("twisted.internet.reactor", _imports(os.path.join(PACKAGE, name)), name)

    def test_header_lines(self) -> None:
        """
        Every media module names its tests and uses postponed annotations.
        """
        for name in os.listdir(PACKAGE):
            if not name.endswith(".py") or name == "__init__.py":
                continue
            with open(os.path.join(PACKAGE, name)) as f:
                text = f.read()
            self.assertTrue(text.startswith("# -*- test-case-name: tests.media."), name)
            self.assertIn("from __future__ import annotations", text, name)
