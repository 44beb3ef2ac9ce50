# -*- test-case-name: tests.integration.test_cluster_kamailio -*-
"""
Several AI Connect nodes behind Kamailio (SPEC s14), for the cluster
tests: Kamailio (the Debian package) run on C{etc/kamailio/kamailio.cfg}
with a generated dispatcher list, nodes as real C{twistd} processes on
their own loopback addresses (127.0.0.2, 127.0.0.3, ...), each with its
own configuration, SQLite database and RTP range, and an SRC that places
SIPRec calls through Kamailio and answers the nodes' BYEs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from twisted.internet import reactor, utils
from twisted.trial.unittest import TestCase

from aiconnect.sip.message import make_response, parse
from tests.fakes import UdpPeer, WaitTimeout, status_of, wait_until
from tests.integration.helpers import Certificates, free_port, write_config
from tests.integration.siprec_peer import DATA, in_dialog, sdp_offer, siprec_invite
from tests.integration.twistd import ROOT, Twistd, start_twistd

KAMAILIO_CFG = ROOT / "etc" / "kamailio" / "kamailio.cfg"
DOMAIN = "customer.example.com"
METADATA = (DATA / "rfc8068-s3.2.1-1-metadata.xml").read_bytes()


def find_binary(name: str) -> str | None:
    """
    C{name} on PATH or in the sbin directories (Debian puts C{kamailio}
    and C{kamcmd} in /usr/sbin, not on a normal user's PATH).
    """
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


def bindable(host: str) -> bool:
    """
    Whether a UDP socket can be bound on C{host} (Linux routes all of
    127/8 to the loopback interface; other systems may not).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, 0))
        except OSError:
            return False
    return True


class Kamailio:
    """
    Kamailio on 127.0.0.1:C{port} (UDP and TCP) with the project's
    configuration, its node list in a generated dispatcher list file, its
    control socket and log in a scratch directory.
    """

    def __init__(self, binary: str, kamcmd: str, nodes: list[tuple[str, int]], children: int = 2) -> None:
        self.binary = binary
        self.kamcmd = kamcmd
        self.dir = Path(tempfile.mkdtemp(prefix="aiconnect-kamailio-"))
        self.port = free_port()
        self.ctl = "unix:%s" % (self.dir / "ctl",)
        self.list_file = self.dir / "dispatcher.list"
        # Flags 9: inactive and probed, so a node takes calls only once it
        # has answered an OPTIONS probe with 200.
        self.list_file.write_text("".join("1 sip:%s:%d 9\n" % node for node in nodes))
        self.children = children
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            self.binary, "-DD", "-E", "-n", str(self.children), "-m", "64",
            "-f", str(KAMAILIO_CFG), "-Y", str(self.dir),
            "-A", "LISTEN_ADDR=127.0.0.1", "-A", "LISTEN_PORT=%d" % self.port,
            "-A", 'DISPATCHER_LIST="%s"' % self.list_file,
            "-A", 'CTL_SOCKET="%s"' % self.ctl,
        ]  # fmt: skip
        with open(self.dir / "kamailio.log", "ab") as out:
            # Its own process group: the workers go with the main process.
            self.proc = subprocess.Popen(argv, cwd=str(self.dir), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        path = self.dir / "kamailio.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """
        SIGTERM (Kamailio stops its workers), SIGKILL to its process group
        if it is still there after 5 s.
        """
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    async def states(self) -> dict[str, str]:
        """
        The dispatcher's state of each node (C{kamcmd dispatcher.list}):
        URI -> flags (C{"AP"}: active, probed; C{"IP"}: inactive).
        """
        out, _err, _code = await utils.getProcessOutputAndValue(self.kamcmd, self.list_command()[1:], reactor=reactor)
        return parse_states(out.decode(errors="replace"))

    def list_command(self) -> list[str]:
        """
        The C{kamcmd} command line that lists the dispatcher's nodes.
        """
        return [self.kamcmd, "-s", self.ctl, "dispatcher.list"]


def parse_states(listing: str) -> dict[str, str]:
    """
    URI -> flags of each destination in C{kamcmd dispatcher.list}'s output.
    """
    states: dict[str, str] = {}
    uri = ""
    for line in listing.splitlines():
        key, _, value = line.strip().partition(": ")
        if key == "URI":
            uri = value
        elif key == "FLAGS" and uri:
            states[uri] = value
    return states


def start_kamailio(test: TestCase, nodes: list[tuple[str, int]]) -> Kamailio:
    """
    A started L{Kamailio} (stopped at the end of the test), or the test
    skipped when the package is not installed.
    """
    binary, kamcmd = find_binary("kamailio"), find_binary("kamcmd")
    if binary is None or kamcmd is None:
        test.skipTest("kamailio is not installed (Debian: apt-get install kamailio)")
    kam = Kamailio(binary, kamcmd, nodes)
    # Cleanups run last in, first out: stopped, then its directory removed
    # (a failure message carries its log).
    test.addCleanup(shutil.rmtree, kam.dir, True)
    kam.start()
    test.addCleanup(kam.stop)
    return kam


async def wait_states(test: TestCase, kam: Kamailio, want: dict[str, str], timeout: float) -> None:
    """
    Wait until the dispatcher shows the flags C{want} (URI -> flags) for
    those nodes; fail with Kamailio's log otherwise.
    """
    seen: dict[str, str] = {}

    async def reached() -> bool:
        if not kam.alive():
            test.fail("kamailio exited:\n" + kam.output()[-3000:])
        seen.update(await kam.states())
        return all(seen.get(uri) == flags for uri, flags in want.items())

    await wait_until(reached, timeout, interval=0.1, what=lambda: "dispatcher states %r, have %r; kamailio log:\n%s" % (want, seen, kam.output()[-3000:]))


@dataclass
class Node:
    """
    One AI Connect node: its address, SIP port and C{twistd} process.
    """

    host: str
    sip_port: int
    server: Twistd

    @property
    def uri(self) -> str:
        return "sip:%s:%d" % (self.host, self.sip_port)


def start_node(test: TestCase, host: str, app_port: int, rtp: tuple[int, int], extra: str = "") -> Node:
    """
    A node on C{host}: SIP over UDP/TCP, REST API and RTP all on that
    address, its own SQLite database, its tenant calling back C{app_port}
    (on 127.0.0.1); killed at the end of the test if still running.

    @param extra: appended to the file, after the tenant's table: its
        trunks, or (starting with a table header) more tables.
    """
    directory = Path(tempfile.mkdtemp(prefix="aiconnect-node-"))
    test.addCleanup(shutil.rmtree, directory, True)
    sip = free_port()
    path = write_config(directory, Certificates(), sip, sip, 0, free_port(), extra=extra, app_port=app_port, rtp=rtp)
    # The shared writer binds 127.0.0.1; this node has an address of its own
    # (SIP host, Contact, RTP and API; the callback URL stays as it is).
    path.write_text(path.read_text().replace('= "127.0.0.1"', '= "%s"' % host))
    return Node(host, sip, start_twistd(test, path))


class ClusterSrc(UdpPeer):
    """
    An SRC peer that answers 200 to every BYE it receives (a node ending
    its calls when it drains), unless told not to.
    """

    def __init__(self, answer_bye: bool = True) -> None:
        super().__init__()
        self.answer_bye = answer_bye

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        if data.startswith(b"BYE ") and self.answer_bye:
            self.transport.write(make_response(parse(data), 200).to_bytes(), addr)  # type: ignore[union-attr]
        super().datagramReceived(data, addr)


@dataclass
class CallResult:
    """
    What the SRC saw of one call: the INVITE's final status and, when
    answered, the node (Contact host) that took it.
    """

    call_id: str
    status: int | None
    node: str | None = None


async def siprec_call(test: TestCase, proxy_port: int, hold: float, answer_bye: bool = True) -> CallResult:
    """
    One SIPRec call through the proxy on 127.0.0.1:C{proxy_port}: INVITE,
    final answer; if 200, ACK and after C{hold} s BYE, both straight to the
    node's Contact (no Record-Route), unless the node sent its BYE first
    (answered 200 if C{answer_bye}, else left unanswered).
    """
    src = ClusterSrc(answer_bye)
    listening = reactor.listenUDP(0, src, interface="127.0.0.1")
    test.addCleanup(listening.stopListening)
    local = listening.getHost().port
    invite, ids = siprec_invite("udp", local, DOMAIN, sdp_offer([("1", local + 2, 8)]), METADATA)
    src.send(invite, proxy_port)
    try:
        final = await src.next_final(timeout=20, call_id=ids["call_id"])
    except Exception:
        return CallResult(ids["call_id"], None)
    status = status_of(final)
    if status != 200:
        return CallResult(ids["call_id"], status)
    contact = parse(final, datagram=False).contacts[0].uri
    node = (contact.host, contact.port or 5060)
    src.send(in_dialog("ACK", "udp", local, final, ids, 101, DOMAIN), node[1], node[0])
    try:
        await src.take(lambda m: m.startswith(b"BYE "), timeout=hold)
    except WaitTimeout:
        src.send(in_dialog("BYE", "udp", local, final, ids, 102, DOMAIN), node[1], node[0])
        try:
            await src.take(lambda m: m.startswith(b"SIP/2.0 ") and b" BYE\r\n" in m, timeout=5)
        except WaitTimeout:
            pass
    return CallResult(ids["call_id"], status, node[0])


__all__ = ["CallResult", "ClusterSrc", "Kamailio", "Node", "bindable", "find_binary", "parse_states", "siprec_call", "start_kamailio", "start_node", "wait_states"]
