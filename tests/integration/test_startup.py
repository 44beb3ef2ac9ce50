# -*- test-case-name: tests.integration.test_startup -*-
"""
What an operator sees from C{twistd -n aiconnect} (issue 14 items 3 and
4), with the real server in a subprocess and no extra twistd flags:

    - start-up lines (version, configuration file, listeners, API URL,
      tenants and trunks, RTP range, database, a self-signed certificate
      created);
    - at the default level (info) one line per call state change and none
      per SIP message; C{[log] level = "debug"} adds the messages;
    - an INVITE for an unknown domain logged with the domain;
    - start-up errors on one line, without twistd's usage text: an
      invalid file, a port in use (naming the key and the port);
    - C{--check-config FILE} and C{python -m aiconnect check FILE}.

RTP ports: 61400-61599 (this module's range).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase, TestCase

from aiconnect import __version__, tlsutil
from tests.fakes import wait_until
from tests.integration.helpers import Certificates, free_port, status_of, write_config
from tests.integration.siprec_peer import DATA, AppServer, answered_call, in_dialog, sdp_offer, siprec_invite
from tests.integration.srs_peer import SrsPeer
from tests.integration.twistd import ROOT, TWISTD, options, start_twistd, wait_ready

DOMAIN = "customer.example.com"
METADATA = (DATA / "rfc8068-s3.2.1-1-metadata.xml").read_bytes()
ORDER = {"uri": "sip:aiforward@customer.example.com", "codec": "PCMA"}
#: The RTP ranges of this module's servers.
RTP_CALL = (61400, 61449)
RTP_DEBUG = (61450, 61469)
RTP_ERRORS = (61470, 61499)


def _environment() -> dict[str, str]:
    """
    The subprocess environment: this checkout first on the path, no log
    variables of the caller's.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AICONNECT_LOG_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_twistd(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """
    C{twistd -n --pidfile= aiconnect ARGS} to its end (a start-up that
    fails, or a check): its status and outputs.
    """
    return subprocess.run(
        TWISTD + args, cwd=str(cwd), env=_environment(), capture_output=True, text=True, timeout=60
    )


def _lines(text: str, needle: str) -> list[str]:
    """
    The lines of C{text} holding C{needle}.
    """
    return [line for line in text.splitlines() if needle in line]


class CallLogTests(TestCase):
    """
    One forwarded call through twistd at the default level.
    """

    timeout = 90

    async def test_info_lines(self) -> None:
        """
        Start-up names version, file, listeners, API URL, tenant and trunk,
        RTP range, database and the self-signed certificate it created;
        a forwarded call gives one line each for session start (tenant,
        SRC address, Call-ID), forward start, forward stop, session end
        (reason, duration), and not one line per SIP message; an INVITE
        for an unknown domain is one line naming the domain.
        """
        directory = Path(tempfile.mkdtemp(prefix="aiconnect-startup-"))
        srs = SrsPeer("200")
        srs_port = srs.listen_udp()
        self.addCleanup(srs.stop)
        app = AppServer({"startSIPRecForward": ORDER})
        app_port = app.listen()
        self.addCleanup(app.port.stopListening)
        trunk = '\n  [[tenant.trunk]]\n  match = "aiforward"\n  target = "127.0.0.1:%d"\n  transport = "udp"\n' % srs_port
        sip, tls, api = free_port(), free_port(), free_port()
        path = write_config(
            directory, Certificates(), sip, sip, tls, api, extra="callback_timeout = 3.0\n" + trunk,
            app_port=app_port, rtp=RTP_CALL,
        )
        # No certificate yet: start-up creates a self-signed one.
        text = path.read_text()
        certificate = directory / "tls" / "server.crt"
        text = re.sub(r'certificate = ".*"', f'certificate = "{certificate}"', text, count=1)
        text = re.sub(r'private_key = ".*"', f'private_key = "{directory / "tls" / "server.key"}"', text, count=1)
        path.write_text(text)
        server = start_twistd(self, path)
        await wait_ready(self, server, sip)

        src, local, ok, ids = await answered_call(self, sip, DOMAIN, METADATA)
        await app.wait_for("events", 2, timeout=20)
        src.send(in_dialog("BYE", "udp", local, ok, ids, 102, DOMAIN), sip)
        await wait_until(lambda: "SESSIONCOMPLETED" in app.event_names(), 20, interval=0.05)
        self.assertEqual(
            app.event_names(), ["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"]
        )
        session_id = app.new_calls[0]["sessionId"]
        forward_id = app.events[1]["forwardId"]

        # An INVITE to a domain no tenant has.
        stray, stray_ids = siprec_invite("udp", local, "nobody.example.org", sdp_offer([("96", local + 2, 8)]), METADATA)
        src.send(stray, sip)
        refused = await src.next_final(timeout=10, call_id=stray_ids["call_id"])
        self.assertEqual(status_of(refused), 404, refused)

        rc = await server.stop()
        out = server.output()
        self.assertIn(rc, (0, -signal.SIGTERM), out)
        self.assertNotIn("Traceback", out)

        # Start-up.
        self.assertEqual(len(_lines(out, f"AI Connect {__version__} started, configuration {path}")), 1, out)
        self.assertEqual(
            len(_lines(out, f"SIP listening on udp 127.0.0.1:{sip}, tcp 127.0.0.1:{sip}, tls 127.0.0.1:{tls}")), 1, out
        )
        self.assertEqual(len(_lines(out, f"REST API on http://127.0.0.1:{api}/")), 1, out)
        self.assertEqual(
            len(_lines(out, f"tenant {DOMAIN}: application http://127.0.0.1:{app_port}, "
                            f"trunks: aiforward -> 127.0.0.1:{srs_port} (udp)")), 1, out
        )
        self.assertEqual(len(_lines(out, "RTP ports %d-%d on 127.0.0.1" % RTP_CALL)), 1, out)
        self.assertEqual(len(_lines(out, f"event database {directory / 'events.sqlite3'}")), 1, out)
        self.assertEqual(len(_lines(out, f"TLS: created a self-signed certificate {certificate}")), 1, out)
        self.assertTrue(certificate.exists())

        # The call: one line per state change.
        started = _lines(out, "session started ")
        self.assertEqual(len(started), 1, out)
        self.assertIn(f"session_id={session_id} tenant={DOMAIN} src=127.0.0.1 call_id={ids['call_id']}", started[0])
        forward = _lines(out, "forward started ")
        self.assertEqual(len(forward), 1, out)
        self.assertIn(f"forward_id={forward_id} target=", forward[0])
        self.assertIn(str(srs_port), forward[0])
        stopped = _lines(out, "forward stopped ")
        self.assertEqual(len(stopped), 1, out)
        self.assertIn(f"forward_id={forward_id}", stopped[0])
        self.assertIn("stopped_by=inboundBye", stopped[0])
        ended = _lines(out, "session ended ")
        self.assertEqual(len(ended), 1, out)
        self.assertRegex(ended[0], rf"session_id={session_id} reason=\w+ duration=\d+\.\ds call_id=")

        # Nothing per SIP message: the INVITE, ACK, BYE and their answers
        # (and the OPTIONS probes) leave no line of their own.
        # Twisted's per-connection factory lines (the callbacks' HTTP
        # connection) count as debug.
        for needle in ("received request", "received response", "SIP/2.0", "recv ", "sent ", "Starting factory <twisted.internet.endpoints"):
            self.assertEqual(_lines(out, needle), [], needle)
        call_lines = [line for line in _lines(out, ids["call_id"]) + _lines(out, session_id)]
        self.assertLessEqual(len(set(call_lines)), 6, "\n".join(call_lines))

        # The unknown domain: one line, naming it.
        stray_lines = _lines(out, stray_ids["call_id"])
        self.assertEqual(len(stray_lines), 1, out)
        self.assertIn("unknown tenant domain 'nobody.example.org'", stray_lines[0])
        self.assertIn("status=404", stray_lines[0])


class DebugLevelTests(TestCase):
    """
    C{[log] level} in the file, with no twistd flag.
    """

    timeout = 60

    async def run_with(self, log_table: str) -> str:
        """
        Start twistd on a configuration with C{log_table}, probe it with
        OPTIONS, stop it: its output.
        """
        directory = Path(tempfile.mkdtemp(prefix="aiconnect-startup-"))
        sip = free_port()
        path = write_config(directory, Certificates(), sip, sip, 0, free_port(), rtp=RTP_DEBUG, extra=log_table)
        server = start_twistd(self, path)
        await wait_ready(self, server, sip)
        self.assertEqual(await options(sip), 200)
        rc = await server.stop()
        out = server.output()
        self.assertIn(rc, (0, -signal.SIGTERM), out)
        return out

    async def test_debug_from_config(self) -> None:
        """
        C{[log] level = "debug"} makes twistd write the per-message lines
        (the OPTIONS probes are logged as received), with no C{--logger}
        flag; start-up says the level.
        """
        out = await self.run_with('\n[log]\nlevel = "debug"\n')
        self.assertTrue(_lines(out, "received request OPTIONS"), out)
        self.assertEqual(len(_lines(out, "log level debug")), 1, out)

    async def test_json_from_config(self) -> None:
        """
        C{[log] format = "json"} makes twistd write JSON lines, no flag
        needed.
        """
        out = await self.run_with('\n[log]\nformat = "json"\n')
        records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        self.assertIn("log level info (debug adds every SIP message)", [r["message"] for r in records], out)
        self.assertEqual([line for line in out.splitlines() if line and not line.startswith("{")], [], out)


class StartupErrorTests(SynchronousTestCase):
    """
    A server that cannot start says why in one line and exits 1.
    """

    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="aiconnect-startup-"))
        self.certs = Certificates()

    def config(self, sip: int, tcp: int, tls: int, api: int, extra: str = "") -> Path:
        return write_config(self.dir, self.certs, sip, tcp, tls, api, rtp=RTP_ERRORS, extra=extra)

    def assertOneLine(self, result: subprocess.CompletedProcess[str], text: str) -> None:
        """
        Status 1, C{text} as the one line of standard error, no traceback and
        no usage text anywhere.
        """
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertEqual(result.stderr.strip().splitlines(), [text], result.stderr)
        for noise in ("Traceback", "Usage:", "--help"):
            self.assertNotIn(noise, result.stdout + result.stderr)

    def test_invalid_file(self) -> None:
        """
        An invalid configuration: the key and the problem, one line.
        """
        path = self.config(70000, 0, 0, 0)
        self.assertOneLine(run_twistd(["--config", str(path)], self.dir), "config: sip.udp_port: 70000 is not in 0..65535")

    def _taken(self, kind: int) -> tuple[socket.socket, int]:
        sock = socket.socket(socket.AF_INET, kind)
        self.addCleanup(sock.close)
        sock.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            sock.listen()
        return sock, sock.getsockname()[1]

    def test_sip_udp_in_use(self) -> None:
        """
        sip.udp_port taken: C{sip.udp_port N: address already in use}.
        """
        _, port = self._taken(socket.SOCK_DGRAM)
        path = self.config(port, 0, 0, 0)
        self.assertOneLine(
            run_twistd(["--config", str(path)], self.dir), f"sip.udp_port {port}: address already in use (127.0.0.1)"
        )

    def test_sip_tcp_in_use(self) -> None:
        """
        sip.tcp_port taken: the key and port named.
        """
        _, port = self._taken(socket.SOCK_STREAM)
        path = self.config(0, port, 0, 0)
        self.assertOneLine(
            run_twistd(["--config", str(path)], self.dir), f"sip.tcp_port {port}: address already in use (127.0.0.1)"
        )

    def test_sip_tls_in_use(self) -> None:
        """
        sip.tls_port taken: the key and port named.
        """
        _, port = self._taken(socket.SOCK_STREAM)
        path = self.config(0, 0, port, 0)
        self.assertOneLine(
            run_twistd(["--config", str(path)], self.dir), f"sip.tls_port {port}: address already in use (127.0.0.1)"
        )

    def test_api_in_use(self) -> None:
        """
        api.port taken: the key and port named.
        """
        _, port = self._taken(socket.SOCK_STREAM)
        path = self.config(free_port(), 0, 0, port)
        self.assertOneLine(
            run_twistd(["--config", str(path)], self.dir), f"api.port {port}: address already in use (127.0.0.1)"
        )

    def test_bad_jwt_key_while_building(self) -> None:
        """
        A problem found while building the service (a JWT key file that is
        not a key): one line naming the key.
        """
        bad = self.dir / "jwt.pem"
        bad.write_text("not a key\n")
        path = self.config(free_port(), 0, 0, free_port(), extra=f'jwt_public_key = "{bad}"\n')
        result = run_twistd(["--config", str(path)], self.dir)
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertTrue(lines[0].startswith("config: tenant[0].jwt_public_key: "), lines[0])
        self.assertNotIn("Traceback", result.stdout + result.stderr)


    def test_database_cannot_be_opened(self) -> None:
        """
        An event database that cannot be opened (its path is a directory):
        one line naming the key and the path.
        """
        path = self.config(free_port(), 0, 0, 0)
        (self.dir / "events.sqlite3").mkdir()
        self.assertOneLine(
            run_twistd(["--config", str(path)], self.dir),
            f"events.database {self.dir / 'events.sqlite3'}: unable to open database file",
        )


class CheckConfigTests(SynchronousTestCase):
    """
    C{twistd aiconnect --check-config FILE} and C{python -m aiconnect check
    FILE}.
    """

    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="aiconnect-check-"))

    def check(self, path: Path) -> subprocess.CompletedProcess[str]:
        return run_twistd(["--check-config", str(path)], self.dir)

    def test_shipped_file(self) -> None:
        """
        The shipped etc/aiconnect.toml is OK; the check binds nothing (its
        SIP port may be taken) and writes nothing (no certificate, no
        database), and says start-up will create the certificate.
        """
        path = ROOT / "etc" / "aiconnect.toml"
        result = self.check(path)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            result.stdout.strip(),
            f"{path}: OK (start-up will create a self-signed certificate {self.dir / 'etc' / 'tls' / 'server.crt'})",
        )
        self.assertEqual(result.stderr, "")
        self.assertEqual(list(self.dir.iterdir()), [])

    def test_invalid_file(self) -> None:
        """
        An invalid file: status 1 and one line naming the file and the key.
        """
        path = self.dir / "bad.toml"
        path.write_text("[sip]\nudp_port = 70000\n")
        result = self.check(path)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.strip().splitlines(), [f"{path}: config: sip.udp_port: 70000 is not in 0..65535"])
        self.assertNotIn("Usage", result.stdout + result.stderr)

    def test_tls_files_loaded(self) -> None:
        """
        The TLS certificate and key are loaded as start-up would: a key
        that is not the certificate's is an error naming tls.private_key.
        """
        certs = Certificates()
        other = tlsutil.self_signed_certificate()
        (self.dir / "other.key").write_bytes(other.private_key)
        path = write_config(self.dir, certs, free_port(), 0, free_port(), 0, rtp=RTP_ERRORS)
        self.assertEqual(self.check(path).returncode, 0)
        path.write_text(path.read_text().replace(f'private_key = "{certs.key}"', f'private_key = "{self.dir / "other.key"}"'))
        result = self.check(path)
        self.assertEqual(result.returncode, 1)
        self.assertIn(": config: tls.private_key: ", result.stderr)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1)

    def test_python_m_check(self) -> None:
        """
        C{python -m aiconnect check FILE}: the same check and statuses.
        """
        good = ROOT / "etc" / "aiconnect.toml"
        bad = self.dir / "bad.toml"
        bad.write_text("[api]\nport = -1\n")
        env = _environment()
        ok = subprocess.run(
            [sys.executable, "-m", "aiconnect", "check", str(good)],
            cwd=str(self.dir), env=env, capture_output=True, text=True, timeout=60,
        )
        self.assertEqual((ok.returncode, ok.stdout.splitlines()[0].split(": ")[1][:2]), (0, "OK"), ok.stderr)
        failed = subprocess.run(
            [sys.executable, "-m", "aiconnect", "check", str(bad)],
            cwd=str(self.dir), env=env, capture_output=True, text=True, timeout=60,
        )
        self.assertEqual(failed.returncode, 1)
        self.assertEqual(len(failed.stderr.strip().splitlines()), 1, failed.stderr)
        self.assertIn("api.port", failed.stderr)

