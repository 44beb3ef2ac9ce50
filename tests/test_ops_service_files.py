# -*- test-case-name: tests.test_ops_service_files -*-
"""
The service files (issue 14 item 6): C{etc/systemd/aiconnect.service}
checked by C{systemd-analyze verify} where it exists, and the
C{Dockerfile} parsed (known instructions, the files it copies exist, its
health check answers as C{/health} does), built only where a Docker
daemon answers.
"""

from __future__ import annotations

import http.server
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from aiconnect import tap
from tests.integration.helpers import free_port
from tests.integration.twistd import TWISTD

ROOT = Path(__file__).parent.parent
UNIT = ROOT / "etc" / "systemd" / "aiconnect.service"
DOCKERFILE = ROOT / "Dockerfile"
#: Where the unit expects the installed virtualenv.
BINARY = "/opt/aiconnect/bin/twistd"
CONFIG = "/etc/aiconnect/aiconnect.toml"
#: The instructions a Dockerfile may hold.
DOCKER_INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
    "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}
#: twistd started from its module, as the tests run it (TWISTD's first part).
TWISTD_MODULE = TWISTD[:3]


def unit_entries(text: str) -> dict[str, dict[str, list[str]]]:
    """
    The unit file's sections, each key with its values in order.
    """
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def docker_instructions(text: str) -> list[tuple[str, str]]:
    """
    The Dockerfile's instructions with their arguments, continuation lines
    joined.
    """
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word, rest.strip()))
    return out


class SystemdUnitTests(SynchronousTestCase):
    """
    C{etc/systemd/aiconnect.service}.
    """

    def setUp(self) -> None:
        self.text = UNIT.read_text()
        self.service = unit_entries(self.text)["Service"]

    def one(self, key: str) -> str:
        values = self.service.get(key, [])
        self.assertEqual(len(values), 1, key)
        return values[0]

    def test_service_settings(self) -> None:
        """
        Foreground twistd under a dedicated user, SIGHUP for reload,
        SIGTERM with a stop timeout above the drain, descriptors, the
        realtime capability, and hardening with the state directory
        writable.
        """
        self.assertEqual(self.one("Type"), "simple")
        self.assertEqual(self.one("User"), "aiconnect")
        self.assertEqual(self.one("ExecReload"), "/bin/kill -HUP $MAINPID")
        self.assertEqual(self.one("KillSignal"), "SIGTERM")
        # The drain: sessions, then events, each up to DRAIN_TIMEOUT.
        self.assertGreater(int(self.one("TimeoutStopSec")), 2 * tap.DRAIN_TIMEOUT + 5)
        self.assertEqual(self.one("LimitNOFILE"), "65536")
        self.assertIn("CAP_SYS_NICE", self.one("AmbientCapabilities").split())
        self.assertEqual(self.one("NoNewPrivileges"), "yes")
        self.assertEqual(self.one("ProtectSystem"), "strict")
        self.assertIn("/var/lib/aiconnect", self.one("ReadWritePaths").split())
        self.assertEqual(self.one("WorkingDirectory"), "/var/lib/aiconnect")

    def test_exec_start_is_the_tested_command(self) -> None:
        """
        ExecStart runs twistd with the arguments the integration tests run
        it with (foreground, no pid file, the aiconnect-epoll reactor), on
        the configuration under /etc/aiconnect.
        """
        argv = shlex.split(self.one("ExecStart"))
        self.assertEqual(argv[0], BINARY)
        self.assertEqual(sorted(argv[1:-2]), sorted(TWISTD[3:]))
        self.assertEqual(argv[-2:], ["--config", CONFIG])

    def test_exec_start_pre_checks(self) -> None:
        """
        ExecStartPre's arguments (the configuration check) exit 0 with
        "FILE: OK" on a valid file and 1 on an invalid one, so systemd
        refuses to start on a broken file.
        """
        argv = shlex.split(self.one("ExecStartPre"))
        self.assertEqual(argv[0], BINARY)
        self.assertIn(CONFIG, argv)
        directory = Path(tempfile.mkdtemp(prefix="aiconnect-unit-"))
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        shipped = str(ROOT / "etc" / "aiconnect.toml")
        ok = subprocess.run(
            TWISTD_MODULE + [shipped if a == CONFIG else a for a in argv[1:]],
            cwd=directory, env=env, capture_output=True, text=True, timeout=60,
        )
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertTrue(ok.stdout.startswith(f"{shipped}: OK"), ok.stdout)
        bad = directory / "bad.toml"
        bad.write_text("[sip]\nudp_port = -5\n")
        failed = subprocess.run(
            TWISTD_MODULE + [str(bad) if a == CONFIG else a for a in argv[1:]],
            cwd=directory, env=env, capture_output=True, text=True, timeout=60,
        )
        self.assertEqual(failed.returncode, 1)
        self.assertEqual(len(failed.stderr.strip().splitlines()), 1, failed.stderr)

    def _verify(self, text: str) -> subprocess.CompletedProcess[str]:
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise SkipTest("systemd-analyze is not installed: the unit file is not verified here")
        directory = Path(tempfile.mkdtemp(prefix="aiconnect-unit-"))
        path = directory / "aiconnect.service"
        path.write_text(text)
        return subprocess.run(
            [analyze, "verify", str(path)], capture_output=True, text=True, timeout=60,
            env=dict(os.environ, SYSTEMD_LOG_COLOR="0"),
        )

    def test_systemd_analyze_verify(self) -> None:
        """
        C{systemd-analyze verify} accepts the unit once its twistd exists
        (a copy pointing at this Python, an existing executable).
        """
        result = self._verify(self.text.replace(BINARY, sys.executable))
        self.assertEqual((result.returncode, result.stdout + result.stderr), (0, ""))

    def test_systemd_analyze_verify_as_shipped(self) -> None:
        """
        As shipped, the only complaint is that /opt/aiconnect/bin/twistd is
        not installed here.
        """
        result = self._verify(self.text)
        lines = {line for line in (result.stdout + result.stderr).splitlines() if line.strip()}
        self.assertEqual(lines, {f"aiconnect.service: Command {BINARY} is not executable: No such file or directory"})


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class DockerfileTests(SynchronousTestCase):
    """
    C{Dockerfile} and C{.dockerignore}.
    """

    def setUp(self) -> None:
        self.instructions = docker_instructions(DOCKERFILE.read_text())

    def args(self, word: str) -> list[str]:
        return [rest for w, rest in self.instructions if w == word]

    def test_instructions(self) -> None:
        """
        Every instruction is a Dockerfile instruction; the image is
        python:3.11-slim, runs as a non-root user, exposes SIP, TLS, the
        API and RTP, stops with SIGTERM, and runs twistd in the foreground
        on /etc/aiconnect/aiconnect.toml.
        """
        self.assertEqual({w for w, _ in self.instructions} - DOCKER_INSTRUCTIONS, set())
        self.assertEqual(self.instructions[0], ("FROM", "python:3.11-slim"))
        users = self.args("USER")
        self.assertEqual(users, ["aiconnect"])
        exposed = " ".join(self.args("EXPOSE")).split()
        for port in ("5060/udp", "5060/tcp", "5061/tcp", "8080/tcp", "20000-29999/udp"):
            self.assertIn(port, exposed)
        self.assertEqual(self.args("STOPSIGNAL"), ["SIGTERM"])
        entrypoint = json.loads(self.args("ENTRYPOINT")[0])
        cmd = json.loads(self.args("CMD")[0])
        self.assertEqual(entrypoint[0], "twistd")
        self.assertEqual(sorted(entrypoint[1:]), sorted(TWISTD[3:]))
        self.assertEqual(cmd, ["--config", CONFIG])
        self.assertTrue(any("pip install ." in run for run in self.args("RUN")))

    def test_copied_paths_exist_and_are_not_ignored(self) -> None:
        """
        Every COPY source exists and .dockerignore does not leave it out.
        """
        ignored = {
            line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        }
        sources = []
        for rest in self.args("COPY"):
            parts = rest.split()
            sources += [p for p in parts[:-1] if not p.startswith("--")]
        self.assertTrue(sources)
        for source in sources:
            self.assertTrue((ROOT / source).exists(), source)
            self.assertNotIn(source.split("/")[0], ignored, source)

    def test_healthcheck_asks_health(self) -> None:
        """
        The HEALTHCHECK command exits 0 while the configured API answers
        /health and non-zero when nothing listens.
        """
        (healthcheck,) = self.args("HEALTHCHECK")
        self.assertIn("/health", healthcheck)
        command = json.loads(healthcheck.split(" CMD ", 1)[1])
        self.assertEqual(command[:2], ["python", "-c"])
        directory = Path(tempfile.mkdtemp(prefix="aiconnect-docker-"))
        config = directory / "aiconnect.toml"
        server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 5)
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        code = command[2].replace(CONFIG, str(config))

        def probe(port: int, host: str = "0.0.0.0") -> int:
            config.write_text(f'[api]\nhost = "{host}"\nport = {port}\n')
            return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30).returncode

        self.assertEqual(probe(server.server_address[1]), 0)
        self.assertNotEqual(probe(free_port()), 0)

        class Server6(http.server.HTTPServer):
            address_family = socket.AF_INET6

        try:
            server6 = Server6(("::1", 0), _Health)
        except OSError:
            return  # no IPv6 loopback here
        thread6 = threading.Thread(target=server6.serve_forever, daemon=True)
        thread6.start()
        self.addCleanup(thread6.join, 5)
        self.addCleanup(server6.server_close)
        self.addCleanup(server6.shutdown)
        self.assertEqual(probe(server6.server_address[1], "::1"), 0)

    def test_docker_build(self) -> None:
        """
        C{docker build} succeeds where a Docker daemon answers.
        """
        docker = shutil.which("docker")
        if docker is None:
            raise SkipTest("docker is not installed: the image is not built here")
        info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30)
        if info.returncode != 0:
            raise SkipTest("no Docker daemon answers (docker info failed): the image is not built here")
        result = subprocess.run(
            [docker, "build", "-q", "-t", "aiconnect-test", str(ROOT)], capture_output=True, text=True, timeout=900
        )
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
