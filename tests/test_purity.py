"""
The sans-IO cores import neither Twisted nor sockets (STYLE s2).
"""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).parent.parent / "aiconnect"

PURE = [
    "sip/abnf.py",
    "sip/message.py",
    "sip/uri.py",
    "sip/multipart.py",
    "sip/dialog.py",
    "sip/peer.py",
    "sip/transaction.py",
    "sip/sdp.py",
    "siprec/metadata.py",
    "siprec/orders.py",
    "sip/digest.py",
    "media/rtp.py",
    "media/g711.py",
    "media/mixer.py",
    "media/ports.py",
    "ratelimit.py",
]

FORBIDDEN = ("twisted", "socket", "asyncio", "time")


class PurityTests(SynchronousTestCase):
    """
    Pure modules stay pure.
    """

    def test_no_io_imports(self) -> None:
        """
        No pure module imports twisted, socket, asyncio or time at run time
        (imports for type checking only are allowed).
        """
        for rel in PURE:
            path = ROOT / rel
            if not path.exists():
                continue
            tree = ast.parse(path.read_text(), str(path))
            typing_only = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
                    typing_only.update(id(n) for b in node.body for n in ast.walk(b))
            for node in ast.walk(tree):
                if id(node) in typing_only:
                    continue
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                for name in names:
                    self.assertNotIn(name.split(".")[0], FORBIDDEN, "%s imports %s" % (rel, name))
