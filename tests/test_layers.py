"""
Imports point down (STYLE s2, "Dependency direction"), the sans-IO cores
stay pure ("Where the sans-IO core ends"), and every module names real
tests.

Each module of C{aiconnect/} is read with C{ast} (never imported) and placed
in one of L{LAYERS}.  A module may import modules of its own layer and of the
layers below; an import of a higher layer, an import cycle between modules,
an I/O, Twisted or clock import in a pure core, and a C{test-case-name} that
names no test module all fail, naming the module, the import and its line.
"""

from __future__ import annotations

import ast
import functools
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "aiconnect"

#: The layers, bottom to top.  A module may import its own layer and the
#: layers below.  A name matches that module exactly; C{name.*} matches the
#: modules below a package; the most specific entry wins, so
#: C{aiconnect.sip.*} places every SIP module among the pure cores except
#: the adapters named further up.  A module no entry matches fails the test:
#: place new modules here.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("aiconnect", "aiconnect.errors", "aiconnect.text", "aiconnect.timers", "aiconnect.metrics_recorder")),
    (
        "pure cores",
        (
            # RFC 3261/4566/4568/4028 grammar and state machines; sip must
            # not import media or siprec (see SEPARATE).
            "aiconnect.sip",
            "aiconnect.sip.*",
            # RTP, G.711, mixing, port pairs, SRTP keys and contexts.
            "aiconnect.media",
            "aiconnect.media.*",
            "aiconnect.siprec",
            "aiconnect.siprec.metadata",
            "aiconnect.siprec.metadata_model",
            "aiconnect.siprec.metadata_writer",
            "aiconnect.siprec.metadata_parser",
            "aiconnect.siprec.metadata_forward",
            "aiconnect.siprec.body",
            # Vendor correlation headers (SPEC s13).
            "aiconnect.siprec.correlation",
            "aiconnect.siprec.forward_rules",
            "aiconnect.ratelimit",
            # Tracks and sample formats of the PCM outputs.
            "aiconnect.outputs",
            "aiconnect.outputs.audio",
            "aiconnect.outputs.context",
        ),
    ),
    (
        "domain",
        ("aiconnect.events", "aiconnect.legs", "aiconnect.machine", "aiconnect.call", "aiconnect.call_facts", "aiconnect.call_outputs", "aiconnect.call_mandatory", "aiconnect.call_failover", "aiconnect.views"),
    ),
    (
        "adapters",
        (
            "aiconnect.sip.transport",
            "aiconnect.sip.txlayer",
            "aiconnect.sip.resolver",
            "aiconnect.sip.ua",
            "aiconnect.sip.uac",
            "aiconnect.media.relay",
            "aiconnect.media.sockets",
            "aiconnect.media.streams",
            "aiconnect.media.rtcp_ports",
            "aiconnect.media.sessions",
            "aiconnect.webhooks",
            "aiconnect.webhooks.*",
            "aiconnect.overload",
            # Carries out the Call's actions on the legs (aiconnect.legs).
            "aiconnect.runner",
            # The WAV file writer.
            "aiconnect.outputs.wav",
            # Where provisioned tenants are kept (SPEC s11).
            "aiconnect.provisioning.store",
            # What the nodes share (SPEC s14): PostgreSQL or SQLite.
            "aiconnect.storage",
            "aiconnect.storage.*",
        ),
    ),
    # The configuration file's shape: it sits above the adapters because it
    # builds the values they take (TimerConfig, ConnectionLimits ...), which
    # are defined in the pure SIP cores; only the orchestration and the
    # composition root read it.
    ("configuration", ("aiconnect.config", "aiconnect.config.*")),
    (
        "orchestration",
        (
            "aiconnect.siprec.orders",
            "aiconnect.siprec.srs",
            "aiconnect.siprec.inbound",
            "aiconnect.siprec.pending",
            "aiconnect.siprec.forward",
            "aiconnect.siprec.dialer",
            "aiconnect.siprec.health", "aiconnect.siprec.probe", "aiconnect.siprec.trunktest",  # SPEC s13 trunk health
            "aiconnect.registry",
            "aiconnect.recovery",
            "aiconnect.api",
            "aiconnect.api.*",
            "aiconnect.tlsutil",
            # Streams (WebSocket), recordings, uploads, their orders.
            "aiconnect.outputs.*",
            # Provisioning and reload (SPEC s11).
            "aiconnect.provisioning",
            "aiconnect.provisioning.live",
            "aiconnect.provisioning.service",
            # A node of a cluster: the shared storage wired to provisioning
            # and the registry (SPEC s14).
            "aiconnect.storage.cluster",
            # Node loss: the dialogs of live sessions and who ends them
            # (they build on aiconnect.recovery).
            "aiconnect.storage.dialogs",
            "aiconnect.storage.nodeloss",
        ),
    ),
    ("composition root", ("aiconnect.tap", "aiconnect.logsetup", "aiconnect.relayreactor", "aiconnect.gctune", "aiconnect.__main__")),
    # aiconnect-demo: builds the service through the composition root.
    ("demo", ("aiconnect.demo", "aiconnect.demo.*")),
)

#: The layers whose modules are pure (no Twisted, sockets or clock), and
#: pure modules of higher layers.
PURE_LAYERS = ("base", "pure cores", "domain")
PURE_MODULES = ("aiconnect.siprec.orders", "aiconnect.outputs.orders")

#: Import roots a pure module must not import at run time (imports under
#: C{if TYPE_CHECKING:} are types only and allowed).
FORBIDDEN = ("twisted", "socket", "select", "selectors", "asyncio", "threading", "time")

#: Calls that read the clock, forbidden in pure modules (they take C{now}).
CLOCK_CALLS = re.compile(r"(?:datetime\.)?(?:datetime|date)\.(?:now|utcnow|today)\Z")

#: Sibling packages of one layer that must not import each other:
#: (importer prefix, imported prefix).
SEPARATE = (("aiconnect.sip", "aiconnect.media"), ("aiconnect.sip", "aiconnect.siprec"))

#: Only the composition root touches the global reactor.
GLOBAL_REACTOR_ALLOWED = ("aiconnect.tap",)

#: Known violations of today, each (module, import), so that the test holds
#: while issue 9 is being merged.  An entry that is no longer violated fails
#: L{LayerTests.test_known_violations_are_current}: delete it then.
KNOWN_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()

#: test-case-name entries of files this branch does not own that name no
#: test module, each (file, name); the lead fixes the headers and empties
#: this (L{HeaderTests.test_known_missing_are_current} fails on a stale one).
KNOWN_MISSING_TESTS: frozenset[tuple[str, str]] = frozenset()

_TEST_CASE_NAME = re.compile(r"test-case-name:\s*(.*?)\s*-\*-")


@dataclass(frozen=True)
class Import:
    """
    One import statement's target.

    @ivar module: the importing module.
    @ivar name: what it imports: a module, or C{module.name} for
        C{from module import name}.
    @ivar source: the module the statement names (C{module} of C{from
        module import name}).
    @ivar line: the line of the statement.
    @ivar typing_only: whether it sits under C{if TYPE_CHECKING:}.
    """

    module: str
    name: str
    source: str
    line: int
    typing_only: bool

    def __str__(self) -> str:
        return f"{self.module} imports {self.name} (line {self.line})"


def module_name(path: Path) -> str:
    """
    @return: the dotted module name of a file under L{ROOT}.
    """
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    """
    @return: every module of the C{aiconnect} package, by dotted name.
    """
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


@functools.lru_cache(maxsize=None)
def parse(path: Path) -> ast.Module:
    """
    @return: the syntax tree of a module (read once per run).
    """
    return ast.parse(path.read_text("utf-8"), str(path))


@functools.lru_cache(maxsize=None)
def imports_of(module: str, path: Path) -> list[Import]:
    """
    @return: every import in the module, at any depth (functions too).
    """
    tree = parse(path)
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            typing_only.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(tree):
        pairs: list[tuple[str, str]] = []
        if isinstance(node, ast.Import):
            pairs = [(alias.name, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            pairs = [(f"{base}.{alias.name}", base) for alias in node.names]
        found.extend(Import(module, name, source, node.lineno, id(node) in typing_only) for name, source in pairs)
    return found


def target_module(name: str, modules: dict[str, Path]) -> str | None:
    """
    @return: the C{aiconnect} module an imported name refers to (C{from
        aiconnect.sip import abnf} -> C{aiconnect.sip.abnf}; C{from
        aiconnect.config import load} -> C{aiconnect.config}), or C{None}
        for another package.
    """
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def layer_of(module: str) -> int | None:
    """
    @return: the index in L{LAYERS} of the most specific entry matching
        C{module}, or C{None}.
    """
    best: tuple[int, int] | None = None  # (specificity, layer)
    for index, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if pattern == module:
                score = 10_000
            elif pattern.endswith(".*") and module.startswith(pattern[:-1]):
                score = len(pattern)
            else:
                continue
            if best is None or score > best[0]:
                best = (score, index)
    return None if best is None else best[1]


def is_pure(module: str) -> bool:
    """
    @return: whether C{module} is a pure core (no Twisted, I/O or clock).
    """
    layer = layer_of(module)
    return module in PURE_MODULES or (layer is not None and LAYERS[layer][0] in PURE_LAYERS)


def dotted(node: ast.expr) -> str:
    """
    @return: C{a.b.c} for an attribute chain on a name, else C{""}.
    """
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """
    @return: the strongly connected components of more than one module
        (Tarjan), each sorted, and the modules importing themselves.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def layer_violations(modules: dict[str, Path]) -> list[tuple[str, str, str]]:
    """
    @return: C{(module, imported module, why)} for every import of a
        higher layer or across a L{SEPARATE} boundary, and for every module
        no layer declares.
    """
    out = []
    for module, path in modules.items():
        mine = layer_of(module)
        if mine is None:
            out.append((module, "", f"{module} is in no layer: add it to tests.test_layers.LAYERS"))
            continue
        for imp in imports_of(module, path):
            target = target_module(imp.name, modules)
            if target is None or target == module:
                continue
            theirs = layer_of(target)
            if theirs is not None and theirs > mine:
                why = f"{imp} points up: {LAYERS[mine][0]} -> {LAYERS[theirs][0]}"
                out.append((module, target, why))
            for low, high in SEPARATE:
                if (module == low or module.startswith(low + ".")) and (target == high or target.startswith(high + ".")):
                    out.append((module, target, f"{imp}: {low} must not import {high}"))
    return out


def purity_violations(modules: dict[str, Path]) -> list[tuple[str, str, str]]:
    """
    @return: C{(module, import or call, why)} for every run-time import of
        a L{FORBIDDEN} root and every clock-reading call in a pure module,
        and every global reactor import outside L{GLOBAL_REACTOR_ALLOWED}.
    """
    out = []
    for module, path in modules.items():
        for imp in imports_of(module, path):
            if imp.name.startswith("twisted.internet.reactor") and module not in GLOBAL_REACTOR_ALLOWED:
                out.append((module, imp.name, f"{imp}: only the composition root touches the global reactor"))
        if not is_pure(module):
            continue
        for imp in imports_of(module, path):
            root = imp.source.split(".")[0]
            if root in FORBIDDEN and not imp.typing_only:
                out.append((module, imp.source, f"{imp}: a pure core imports {root}"))
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.Call) and CLOCK_CALLS.match(dotted(node.func)):
                call = dotted(node.func)
                out.append((module, call, f"{module} calls {call}() (line {node.lineno}): a pure core takes now"))
    return out


def known(violations: list[tuple[str, str, str]]) -> list[str]:
    """
    @return: the reasons of the violations not in L{KNOWN_VIOLATIONS}.
    """
    return [why for module, name, why in violations if (module, name) not in KNOWN_VIOLATIONS]


class LayerTests(SynchronousTestCase):
    """
    The dependency rules of STYLE s2, checked on the source.
    """

    def setUp(self) -> None:
        self.modules = all_modules()

    def test_every_module_found(self) -> None:
        """
        The walk sees the package's modules, in their layers (a guard for
        the walk itself).
        """
        for name, layer in (
            ("aiconnect.errors", "base"),
            ("aiconnect.sip.transaction", "pure cores"),
            ("aiconnect.sip.session_timer", "pure cores"),
            ("aiconnect.media.rtp", "pure cores"),
            ("aiconnect.call", "domain"),
            ("aiconnect.sip.ua", "adapters"),
            ("aiconnect.media.relay", "adapters"),
            ("aiconnect.config", "configuration"),
            ("aiconnect.siprec.srs", "orchestration"),
            ("aiconnect.tap", "composition root"),
        ):
            index = layer_of(name)
            self.assertIsNotNone(index, name)
            assert index is not None
            self.assertEqual(LAYERS[index][0], layer, name)
        self.assertIn("aiconnect.sip.transaction", self.modules)
        self.assertIn("aiconnect.tap", self.modules)
        self.assertIsNone(layer_of("aiconnect.nowhere"))

    def test_imports_point_down(self) -> None:
        """
        No module imports a module of a higher layer, and the SIP layer
        imports neither media nor siprec.
        """
        self.assertEqual(known(layer_violations(self.modules)), [])

    def test_no_import_cycles(self) -> None:
        """
        No two modules import each other, directly or through others
        (function-level imports included, type-only imports not).
        """
        graph: dict[str, set[str]] = {}
        edges: dict[tuple[str, str], Import] = {}
        for module, path in self.modules.items():
            targets = graph.setdefault(module, set())
            for imp in imports_of(module, path):
                target = target_module(imp.name, self.modules)
                if target is not None and not imp.typing_only and target != module:
                    targets.add(target)
                    edges.setdefault((module, target), imp)
        cycles = [
            "; ".join(str(edges[a, b]) for a in cycle for b in cycle if (a, b) in edges)
            for cycle in find_cycles(graph)
        ]
        self.assertEqual(cycles, [])

    def test_pure_cores(self) -> None:
        """
        The pure cores import no Twisted, sockets, threads or clocks at run
        time and call no clock; only the composition root imports the global
        reactor.
        """
        self.assertEqual(known(purity_violations(self.modules)), [])

    def test_known_violations_are_current(self) -> None:
        """
        Every entry of L{KNOWN_VIOLATIONS} is still a violation (delete the
        entries a change has fixed).
        """
        found = {(m, n) for m, n, _ in layer_violations(self.modules) + purity_violations(self.modules)}
        self.assertEqual(sorted(KNOWN_VIOLATIONS - found), [])

    def test_detects_violations(self) -> None:
        """
        The checks catch an upward import, a Twisted import and a clock
        call in a pure core, a cycle, and an undeclared module.
        """
        scratch = tempfile.TemporaryDirectory()
        self.addCleanup(scratch.cleanup)
        fake = Path(scratch.name)
        core, empty = fake / "transaction.py", fake / "empty.py"
        empty.write_text("")
        core.write_text(
            "import time\n"
            "from datetime import datetime\n"
            "from twisted.internet import reactor\n"
            "from aiconnect import config\n"
            "from aiconnect.media.rtp import parse\n"
            "if TYPE_CHECKING:\n"
            "    from twisted.internet.defer import Deferred\n"
            "def f():\n"
            "    return datetime.now()\n"
        )
        modules = {"aiconnect.sip.transaction": core, "aiconnect.config": empty, "aiconnect.media.rtp": empty}
        layers = {(m, n) for m, n, _ in layer_violations(modules)}
        self.assertEqual(
            layers,
            {("aiconnect.sip.transaction", "aiconnect.config"), ("aiconnect.sip.transaction", "aiconnect.media.rtp")},
        )
        pure = {(m, n) for m, n, _ in purity_violations(modules)}
        self.assertEqual(
            pure,
            {
                ("aiconnect.sip.transaction", "time"),
                ("aiconnect.sip.transaction", "twisted.internet"),
                ("aiconnect.sip.transaction", "twisted.internet.reactor"),
                ("aiconnect.sip.transaction", "datetime.now"),
            },
        )
        self.assertEqual(find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}), [["a", "b", "c"]])
        self.assertEqual(find_cycles({"a": {"b"}, "b": set()}), [])
        undeclared = layer_violations({"aiconnect.nowhere": core})
        self.assertEqual([(m, n) for m, n, _ in undeclared], [("aiconnect.nowhere", "")])


class HeaderTests(SynchronousTestCase):
    """
    Every module starts the way the project's modules do, and names tests
    that exist.
    """

    def test_test_case_names_exist(self) -> None:
        """
        Every C{test-case-name} line in C{aiconnect/} (any file) names test
        modules that exist.
        """
        missing = [f"{path} names {name}" for path, name in missing_tests() if (path, name) not in KNOWN_MISSING_TESTS]
        self.assertEqual(missing, [])

    def test_known_missing_are_current(self) -> None:
        """
        Every entry of L{KNOWN_MISSING_TESTS} still names no test module.
        """
        self.assertEqual(sorted(KNOWN_MISSING_TESTS - set(missing_tests())), [])

    def test_test_module_exists(self) -> None:
        """
        The lookup finds real test modules and packages and nothing else.
        """
        self.assertTrue(names_test_module("tests.test_layers"))
        self.assertTrue(names_test_module("tests.sip"))
        self.assertFalse(names_test_module("tests.sip.test_nothing_here"))
        self.assertFalse(names_test_module("tests..x"))

    def test_header_lines(self) -> None:
        """
        Every module has a docstring; every module but a package's
        C{__init__} starts with its C{test-case-name} line and uses
        postponed annotations; media modules name tests under
        C{tests.media}.
        """
        wrong = []
        for module, path in all_modules().items():
            if ast.get_docstring(parse(path)) is None:
                wrong.append(f"{module}: no docstring")
            if path.name == "__init__.py":
                continue
            text = path.read_text("utf-8")
            if not text.startswith("# -*- test-case-name: "):
                wrong.append(f"{module}: no test-case-name first line")
            if module.startswith("aiconnect.media.") and not text.startswith("# -*- test-case-name: tests.media."):
                wrong.append(f"{module}: test-case-name not under tests.media")
            if "from __future__ import annotations" not in text:
                wrong.append(f"{module}: no 'from __future__ import annotations'")
        self.assertEqual(wrong, [])


def missing_tests() -> list[tuple[str, str]]:
    """
    @return: C{(file, name)} for each name a C{test-case-name} line in
        C{aiconnect/} gives that is no test module.
    """
    missing = []
    for path in sorted(PACKAGE.rglob("*")):
        if not path.is_file() or path.suffix in (".pyc", ".so"):
            continue
        try:
            text = path.read_text("utf-8")
        except UnicodeDecodeError:
            continue
        for m in _TEST_CASE_NAME.finditer(text):
            for name in filter(None, (n.strip() for n in m[1].split(","))):
                if not names_test_module(name):
                    missing.append((path.relative_to(ROOT).as_posix(), name))
    return missing


def names_test_module(name: str) -> bool:
    """
    @return: whether C{name} is a module or package under L{ROOT}.
    """
    parts = name.split(".")
    if not all(part.isidentifier() for part in parts):
        return False
    base = ROOT.joinpath(*parts)
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()
