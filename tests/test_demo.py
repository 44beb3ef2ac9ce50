"""
C{aiconnect-demo}: one SIPRec call forwarded end to end on 127.0.0.1
(real sockets, real HTTP, real SQLite), in this process and as the
command C{python -m aiconnect.demo}.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from aiconnect.demo.peers import metadata
from aiconnect.demo.run import DemoOptions, parse_args, run_demo
from aiconnect.siprec.metadata import parse_metadata
from tests.siprec.test_metadata import schema

ROOT = Path(__file__).resolve().parents[1]


def ladder_index(lines: list[str], sender: str, receiver: str, what: str) -> int:
    """
    The index of the first ladder line of C{sender} -> C{receiver} whose
    message starts with C{what}; fails if there is none.
    """
    pattern = re.compile(r"^\s*\d+\.\d{3}  %s\s*-> %s\s+%s" % (re.escape(sender), re.escape(receiver), re.escape(what)))
    for i, line in enumerate(lines):
        if pattern.match(line):
            return i
    raise AssertionError("no ladder line %s -> %s %s in:\n%s" % (sender, receiver, what, "\n".join(lines)))


class DemoTests(TestCase):
    """
    The demo run in this process, on trial's reactor.
    """

    timeout = 20

    async def test_forwarded_call(self) -> None:
        """
        The demo exits 0 after the ladder of a forwarded call (INVITE to
        AI Connect, 200, the forward's INVITE to the SRS and its 200, BYE
        on both sides) and the events SESSIONSTARTED, SIPRECFORWARDSTARTED,
        SIPRECFORWARDSTOPPED, SESSIONCOMPLETED, in that order, at the
        application; the SRS got the relayed RTP transcoded to PCMA.
        """
        out, err = io.StringIO(), io.StringIO()
        code = await run_demo(reactor, DemoOptions(timeout=10, duration=0.3), out, err)
        lines = out.getvalue().splitlines()
        self.assertEqual((code, err.getvalue()), (0, ""), out.getvalue())
        order = [
            ladder_index(lines, "SRC", "AI Connect", "INVITE sip:recorder@demo.example.com"),
            ladder_index(lines, "AI Connect", "app", "newCall"),
            ladder_index(lines, "AI Connect", "SRC", "200 OK (INVITE)"),
            ladder_index(lines, "SRC", "AI Connect", "ACK"),
            ladder_index(lines, "AI Connect", "SRS", "INVITE"),
            ladder_index(lines, "SRS", "AI Connect", "200 OK (INVITE)"),
            ladder_index(lines, "AI Connect", "SRS", "ACK"),
            ladder_index(lines, "SRC", "AI Connect", "BYE"),
            ladder_index(lines, "AI Connect", "SRS", "BYE"),
            ladder_index(lines, "SRS", "AI Connect", "200 OK (BYE)"),
        ]
        self.assertEqual(order, sorted(order))
        ladder_index(lines, "AI Connect", "SRC", "200 OK (BYE)")
        events = [m.group(1) for m in map(re.compile(r".*AI Connect -> app\s+event (\w+) session=ses_").match, lines) if m]
        self.assertEqual(events, ["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"])
        self.assertRegex(out.getvalue(), r"SIPRECFORWARDSTARTED session=\S+ forwardId=fwd_\S+ target=\S+ codec=PCMA")
        self.assertRegex(out.getvalue(), r"SESSIONCOMPLETED session=\S+ reason=inboundBye")
        self.assertRegex(out.getvalue(), r"the SRS received [1-9]\d* with payload type 8\n")
        self.assertRegex(lines[-1], r"^demo OK: the call was forwarded \(the SRS got its INVITE \d+\.\d{3} s after the start\)")

    async def test_timeout(self) -> None:
        """
        A call still up at the timeout: exit 1 with one line naming the
        first step not seen, after a clean stop (the drain sends BYE to
        the SRC and to the SRS).
        """
        out, err = io.StringIO(), io.StringIO()
        code = await run_demo(reactor, DemoOptions(timeout=0.3, duration=5.0), out, err)
        self.assertEqual(code, 1)
        self.assertRegex(err.getvalue(), r"^demo FAILED: timeout after 0.3 s: not seen: [^\n]+\n\Z")
        lines = out.getvalue().splitlines()
        self.assertLess(ladder_index(lines, "AI Connect", "SRC", "BYE"), ladder_index(lines, "SRC", "AI Connect", "200 OK (BYE)"))
        ladder_index(lines, "AI Connect", "SRS", "BYE")
        self.assertNotIn("demo OK", out.getvalue())

    def test_options(self) -> None:
        """
        C{--rtp-min} moves the 200-port range unless C{--rtp-max} is given;
        a range upside down is a usage error.
        """
        options, level = parse_args(["--rtp-min", "40000", "--timeout", "5", "--quiet"])
        self.assertEqual((options.rtp_min, options.rtp_max, options.timeout, options.quiet, level), (40000, 40199, 5.0, True, "warn"))
        self.assertEqual(parse_args(["--verbose"])[1], "info")
        self.assertRaises(SystemExit, parse_args, ["--rtp-min", "5000", "--rtp-max", "4000"])


class SrcMetadataTests(SynchronousTestCase):
    """
    What the demo's SRC sends.
    """

    def test_metadata_is_valid_rfc7865(self) -> None:
        """
        The SRC's metadata validates against the RFC 7865 schema and names
        two participants, each sending the stream of its label.
        """
        document = metadata("demo.example.com", ["1", "2"])
        schema().validate(document.decode())
        parsed = parse_metadata(document)
        senders = {s.label: [n.aor for p in parsed.senders(s.stream_id) for n in p.name_ids] for s in parsed.streams}
        self.assertEqual(senders, {"1": ["sip:alice@demo.example.com"], "2": ["sip:bob@demo.example.com"]})


class DemoCommandTests(SynchronousTestCase):
    """
    C{python -m aiconnect.demo} as a process, and C{aiconnect-demo} as
    C{pip install .} installs it.
    """

    def test_packaging(self) -> None:
        """
        setup.cfg installs the C{aiconnect-demo} command, the demo package
        and C{examples/} as C{aiconnect.examples} (the demo imports the
        example application from there once installed).
        """
        import configparser

        from aiconnect.demo.run import main

        cfg = configparser.ConfigParser()
        cfg.read(ROOT / "setup.cfg")
        scripts = dict(line.split(" = ") for line in cfg["options.entry_points"]["console_scripts"].split("\n") if line)
        self.assertEqual(scripts["aiconnect-demo"], "aiconnect.demo.run:main")
        self.assertEqual(main.__module__ + ":" + main.__name__, scripts["aiconnect-demo"])
        packages = cfg["options"]["packages"].split()
        self.assertIn("aiconnect.demo", packages)
        self.assertIn("aiconnect.examples", packages)
        self.assertIn("aiconnect.examples = examples", cfg["options"]["package_dir"])
        self.assertTrue((ROOT / "examples" / "__init__.py").exists())

    def test_command_exits_0(self) -> None:
        """
        The command prints only its result line with C{--quiet} and exits 0.
        """
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
        result = subprocess.run(
            [sys.executable, "-m", "aiconnect.demo", "--quiet", "--duration", "0.2", "--timeout", "15"],
            cwd=str(ROOT),
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.assertEqual((result.returncode, result.stderr), (0, ""), result.stdout)
        self.assertRegex(result.stdout, r"^demo OK: the call was forwarded [^\n]+\n\Z")
