# -*- test-case-name: tests.test_demo -*-
"""
C{aiconnect-demo} (or C{python -m aiconnect.demo}): one recorded call
forwarded end to end, on 127.0.0.1, in one process and one reactor.

It starts AI Connect (L{aiconnect.tap.build_service} on a generated
configuration: free SIP and API ports, RTP ports 61000-61199, a temporary
SQLite outbox, tenant C{demo.example.com} calling back the example
application, trunk C{recorder} pointing at the demo SRS), the example
application (C{examples/app.py}, installed as C{aiconnect.examples.app}),
an SRS and an SRC (L{aiconnect.demo.peers}). The SRC places one SIPRec
call; the application answers newCall with a C{startSIPRecForward} to
C{sip:recorder@demo.example.com}; AI Connect forwards the call to the SRS
and relays its RTP; the SRC hangs up. Every SIP message and every event
is printed as it happens. Then the service stops as on SIGTERM and the
demo exits 0 once every step was seen (see L{Demo.steps}), or 1 with the
first missing step.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import importlib.util
import json
import secrets
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from twisted.internet import defer

from aiconnect.demo.peers import HOST, SERVER, Ladder, Src, Srs

__all__ = ["DOMAIN", "DemoOptions", "Demo", "example_app_module", "main", "write_config"]

DOMAIN = "demo.example.com"
TRUNK = "recorder"
#: The RTP port range of the demo's server: above Linux's ephemeral range
#: (32768-60999), so that no socket bound to port 0 takes one.
RTP_MIN = 61000
RTP_PORTS = 200


@dataclass(frozen=True)
class DemoOptions:
    """
    @ivar timeout: Seconds the whole call may take before the demo fails.
    @ivar rtp_min: The first RTP port of the server's range.
    @ivar rtp_max: The last one.
    @ivar duration: Seconds the SRC sends RTP before it hangs up.
    @ivar quiet: Print only the result line.
    """

    timeout: float = 30.0
    rtp_min: int = RTP_MIN
    rtp_max: int = RTP_MIN + RTP_PORTS - 1
    duration: float = 1.5
    quiet: bool = False


def example_app_module() -> Any:
    """
    The example application's module: C{aiconnect.examples.app} as
    installed, or C{examples/app.py} beside the C{aiconnect} package of a
    source checkout run in place.

    @raise ImportError: If neither is there.
    """
    try:
        return importlib.import_module("aiconnect.examples.app")
    except ModuleNotFoundError:
        pass
    name = "aiconnect_examples_app"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parents[2] / "examples" / "app.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not path.exists():
        raise ImportError("the example application is not installed (aiconnect.examples.app): reinstall with pip install .")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """
    A port free for UDP and TCP on 127.0.0.1 right now (the kernel's
    choice for a TCP socket, checked for UDP).
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind((HOST, 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind((HOST, port))
            except OSError:
                continue
            return port
    raise OSError("no free port on %s" % HOST)


def write_config(
    directory: Path, sip_port: int, api_port: int, app_port: int, srs_port: int, rtp: tuple[int, int], secret: str, token: str
) -> Path:
    """
    Write the demo's configuration to C{directory/aiconnect.toml}: SIP over
    UDP only, everything on 127.0.0.1, files in C{directory}.
    """

    def q(value: object) -> str:
        return json.dumps(str(value))

    path = directory / "aiconnect.toml"
    path.write_text(
        f"""# aiconnect-demo's configuration (a temporary file)
[sip]
host = "{HOST}"
public_address = "{HOST}"
private_address = "{HOST}"
udp_port = {sip_port}
tcp_port = 0
tls_port = 0

[tls]
certificate = {q(directory / "tls.crt")}
private_key = {q(directory / "tls.key")}

[rtp]
host = "{HOST}"
port_min = {rtp[0]}
port_max = {rtp[1]}

[api]
host = "{HOST}"
port = {api_port}

[events]
database = {q(directory / "events.sqlite3")}
retry_initial = 0.2
retry_max = 1.0

[recording]
directory = {q(directory / "recordings")}

[[tenant]]
domain = "{DOMAIN}"
callback_url = "http://{HOST}:{app_port}"
api_tokens = [{q(token)}]
signing_secret = {q(secret)}

  [[tenant.trunk]]
  match = "{TRUNK}"
  target = "{HOST}:{srs_port}"
  transport = "udp"
"""
    )
    return path


class Demo:
    """
    One run of the demo (see the module docstring).

    @ivar src: The L{Src}.
    @ivar srs: The L{Srs}.
    @ivar app: The example application (an C{ExampleApp}).
    @ivar forwarded_at: Seconds from the start to the forwarded INVITE's
        arrival at the SRS, or C{None}.
    """

    def __init__(self, reactor: Any, options: DemoOptions, out: IO[str], err: IO[str]) -> None:
        self._reactor = reactor
        self._options = options
        self._out = out
        self._err = err
        self.ladder = Ladder(reactor.seconds, self._print)
        self.src: Any = None
        self.srs: Any = None
        self.app: Any = None
        self.forwarded_at: float | None = None
        self._result: defer.Deferred[tuple[int, str]] = defer.Deferred()
        #: Fires once L{run} stopped everything (Ctrl-C waits for it).
        self._stopped: defer.Deferred[None] = defer.Deferred()
        self._interrupted = False
        self._service: Any = None
        self._app_port: Any = None
        self._shutdown: Any = None

    def _print(self, line: str) -> None:
        if not self._options.quiet:
            self._out.write(line + "\n")
            self._out.flush()

    # -- progress --------------------------------------------------------------

    def _events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.app.events if e.get("event") == kind]

    def steps(self) -> list[tuple[str, bool]]:
        """
        What a forwarded call shows, in order: (description, seen).
        """
        src, srs = self.src, self.srs
        return [
            ("AI Connect answered the SRC's SIPRec INVITE 200", src.status == 200),
            ("the application got newCall", bool(self.app.new_calls)),
            ("the SRS got the forwarded INVITE", bool(srs.invites)),
            ("SIPRECFORWARDSTARTED reached the application", bool(self._events("SIPRECFORWARDSTARTED"))),
            ("AI Connect answered the SRC's BYE 200", src.bye_status == 200),
            ("the SRS got the BYE", bool(srs.byes)),
            ("SESSIONCOMPLETED reached the application", bool(self._events("SESSIONCOMPLETED"))),
        ]

    def _failure(self) -> str | None:
        if self.src.failure is not None:
            return self.src.failure
        for event in self._events("SIPRECFORWARDFAILED"):
            return "the forward failed: %s" % (event.get("reason"),)
        if self.app.rejected:
            return "the application refused %d request(s) for their signature" % (self.app.rejected,)
        return None

    def check(self) -> None:
        """
        Called on every change: note the forward's arrival, end the run on
        a failure or once every step was seen.
        """
        if self.src is None:
            return
        if self.srs.invites and self.forwarded_at is None:
            self.forwarded_at = self.ladder.elapsed()
        failure = self._failure()
        if failure is not None:
            self._finish(1, failure)
        elif all(seen for _, seen in self.steps()):
            self._finish(0, "")

    def _finish(self, code: int, reason: str) -> None:
        if not self._result.called:
            self._result.callback((code, reason))

    def _interrupt(self) -> defer.Deferred[None]:
        """
        The reactor is stopping (Ctrl-C, SIGTERM): end the run, and let the
        reactor wait until the service drained and everything is closed.
        """
        self._interrupted = True
        self._finish(1, "interrupted")
        return self._stopped

    def _timed_out(self) -> None:
        missing = [what for what, seen in self.steps() if not seen]
        self._finish(1, "timeout after %g s: not seen: %s" % (self._options.timeout, missing[0] if missing else "?"))

    # -- running -----------------------------------------------------------------

    def _make_app(self, secret: str) -> Any:
        demo = self
        base = example_app_module().ExampleApp

        class DemoApp(base):  # type: ignore[misc,valid-type]
            def event(self, event: dict[str, Any]) -> None:
                base.event(self, event)
                demo.check()

            def new_call(self, call: dict[str, Any]) -> dict[str, Any]:
                answer: dict[str, Any] = base.new_call(self, call)
                demo.check()
                return answer

        say = lambda text: self.ladder.line("%-10s -> %-10s  %s" % (SERVER, "app", text))  # noqa: E731
        return DemoApp(secret, ["sip:%s@%s" % (TRUNK, DOMAIN)], say=say)

    async def run(self) -> int:
        """
        Run the demo.

        @return: The exit code: 0 when the call was forwarded and completed.
        """
        directory = Path(tempfile.mkdtemp(prefix="aiconnect-demo-"))
        timeout: Any = None
        try:
            try:
                self._start(directory)
                # From the SRC's INVITE on.
                timeout = self._reactor.callLater(self._options.timeout, self._timed_out)
                self.src.call()
                code, reason = await self._result
            except Exception as e:
                code, reason = 1, "%s: %s" % (type(e).__name__, e)
            if timeout is not None and timeout.active():
                timeout.cancel()
            await self._close()
        finally:
            shutil.rmtree(directory, ignore_errors=True)
            self._stopped.callback(None)
        self._report(code, reason)
        return code

    def _start(self, directory: Path) -> None:
        """
        Start the application, the SRS, AI Connect and the SRC's socket;
        print where they are.
        """
        from twisted.web.server import Site

        from aiconnect import config as config_mod
        from aiconnect.tap import build_service

        reactor = self._reactor
        options = self._options
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        self.app = self._make_app(secret)
        site = Site(self.app.app.resource())
        site.displayTracebacks = False
        site.noisy = False
        self._app_port = reactor.listenTCP(0, site, interface=HOST)
        app_port = self._app_port.getHost().port
        self.srs = Srs(reactor, self.ladder, self.check)
        srs_port = self.srs.listen()
        sip_port, api_port = free_port(), free_port()
        path = write_config(directory, sip_port, api_port, app_port, srs_port, (options.rtp_min, options.rtp_max), secret, secrets.token_urlsafe(16))
        self._service = build_service(config_mod.load(path), reactor)
        self._service.startService()
        # Ctrl-C, SIGTERM: the same drain, then the same clean-up.
        self._shutdown = reactor.addSystemEventTrigger("before", "shutdown", self._interrupt)
        self.src = Src(reactor, self.ladder, self.check, (HOST, sip_port), DOMAIN, options.duration)
        src_port = self.src.listen()
        for line in (
            "AI Connect demo: one SIPRec call, forwarded by the example application to an SRS",
            "  AI Connect   SIP udp %s:%d, REST API http://%s:%d, RTP %d-%d, tenant %s"
            % (HOST, sip_port, HOST, api_port, options.rtp_min, options.rtp_max, DOMAIN),
            "  application  http://%s:%d (examples/app.py), forwards to sip:%s@%s" % (HOST, app_port, TRUNK, DOMAIN),
            "  SRS          %s:%d (trunk %r)   SRC %s:%d" % (HOST, srs_port, TRUNK, HOST, src_port),
            "",
            "   time  from       -> to          message",
        ):
            self._print(line)

    async def _close(self) -> None:
        """
        Stop AI Connect as on SIGTERM (whatever is still up ends with
        BYEs), then the peers and the application.
        """
        if self._shutdown is not None and not self._interrupted:
            self._reactor.removeSystemEventTrigger(self._shutdown)
        if self._service is not None:
            await self._service.stopService()
        for peer in (self.src, self.srs):
            if peer is not None:
                await defer.maybeDeferred(peer.stop)
        if self._app_port is not None:
            await defer.maybeDeferred(self._app_port.stopListening)

    def _report(self, code: int, reason: str) -> None:
        if code != 0:
            self._err.write("demo FAILED: %s\n" % (reason,))
            self._err.flush()
            return
        received = ", ".join("%d with payload type %d" % (n, pt) for pt, n in sorted(self.srs.rtp.items())) or "none"
        self._print("")
        self._print("RTP: the SRC sent %d packets (PCMU, payload type 0); the SRS received %s" % (self.src.rtp_sent, received))
        self._out.write(
            "demo OK: the call was forwarded (the SRS got its INVITE %.3f s after the start) and completed in %.2f s\n"
            % (self.forwarded_at or 0.0, self.ladder.elapsed())
        )
        self._out.flush()


def run_demo(reactor: Any, options: DemoOptions, out: IO[str] | None = None, err: IO[str] | None = None) -> defer.Deferred[int]:
    """
    Run the demo on a running reactor.

    @return: A Deferred firing with the exit code.
    """
    demo = Demo(reactor, options, out or sys.stdout, err or sys.stderr)
    return defer.ensureDeferred(demo.run())


def parse_args(argv: list[str] | None) -> tuple[DemoOptions, str]:
    parser = argparse.ArgumentParser(
        prog="aiconnect-demo",
        description="One SIPRec call on 127.0.0.1: an SRC calls AI Connect, the example application forwards it to an SRS. "
        "Prints the SIP ladder and the events; exits 0 when the call was forwarded and completed.",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before giving up (default 30)")
    parser.add_argument("--rtp-min", type=int, default=RTP_MIN, help="first RTP port of AI Connect (default %d)" % RTP_MIN)
    parser.add_argument("--rtp-max", type=int, default=None, help="last RTP port (default rtp-min + %d)" % (RTP_PORTS - 1))
    parser.add_argument("--duration", type=float, default=1.5, help="seconds of audio the SRC sends (default 1.5)")
    parser.add_argument("--quiet", action="store_true", help="print only the result line")
    parser.add_argument("--verbose", action="store_true", help="also print AI Connect's log (info level) on stderr")
    parser.add_argument(
        "--log-level",
        default=None,
        choices=("debug", "info", "warn", "error", "critical"),
        help="level of AI Connect's log on stderr (default warn; debug shows every SIP message in full)",
    )
    args = parser.parse_args(argv)
    rtp_max = args.rtp_max if args.rtp_max is not None else args.rtp_min + RTP_PORTS - 1
    if not 1024 <= args.rtp_min < rtp_max <= 65535:
        parser.error("the RTP range must be within 1024-65535 with --rtp-min below --rtp-max")
    level = args.log_level or ("info" if args.verbose else "warn")
    return DemoOptions(args.timeout, args.rtp_min, rtp_max, args.duration, args.quiet), level


def main(argv: list[str] | None = None) -> None:
    """
    The C{aiconnect-demo} command: runs the demo on the global reactor
    and exits with its code.
    """
    options, level = parse_args(argv)
    from twisted.internet import task
    from twisted.logger import globalLogBeginner

    from aiconnect.logsetup import make_observer
    from aiconnect.sip import trace

    trace.set_level(level)
    globalLogBeginner.beginLoggingTo([make_observer("text", level, sys.stderr)], redirectStandardIO=False)

    async def demo(reactor: Any) -> None:
        code = await run_demo(reactor, options)
        if code:
            raise SystemExit(code)

    task.react(lambda reactor: defer.ensureDeferred(demo(reactor)))
