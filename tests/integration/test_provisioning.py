# -*- test-case-name: tests.integration.test_provisioning -*-
"""
Provisioning and reload through the running service (SPEC s11, issue 13):
tenants and trunks changed over real HTTP, then real SIPRec calls (raw UDP
SRC, scripted SRSs, real HTTP applications checking the signatures) that
use them; a live call keeps what it started with; SIGHUP on a real
C{twistd} process; a restart on the same database; cross-tenant attempts.

RTP ports 61200-61399, L{RTP_PORTS} per class from
L{provisioning_support.RTP_LOW}.
"""

from __future__ import annotations

import re
import signal
import tempfile
from pathlib import Path
from typing import Any

import treq
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from aiconnect import config as config_mod
from aiconnect.tap import build_service
from tests.fakes import pause, wait_until
from tests.integration.helpers import free_port
from tests.integration.provisioning_support import (
    ADMIN,
    RTP_LOW,
    Caller,
    TenantApp,
    api,
    provisioning_config,
    srs_peer,
    tenant_object,
    trunk_object,
)
from tests.integration.siprec_peer import SECRET, AppServer, verify_signature
from tests.integration.srs_peer import SrsPeer
from tests.integration.twistd import options, start_twistd, wait_ready

FILE_DOMAIN = "customer.example.com"
FILE_TOKEN = "t0ken"
DOMAIN = "tenant-b.example.net"
TOKEN = "b-t0ken"
#: The RTP ports of each class (a call with a forward takes 8).
RTP_PORTS = 28
ENDED = ["SESSIONSTARTED", "SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"]


def forward_to(match: str, domain: str = DOMAIN) -> dict[str, Any]:
    """
    A newCall answer ordering one forward to C{sip:<match>@<domain>}.
    """
    return {"startSIPRecForward": {"uri": "sip:%s@%s" % (match, domain), "codec": "PCMA"}}


class ServiceCase(TestCase):
    """
    The real service in this process (L{build_service}), its file tenant's
    application, and the provisioning API.

    @ivar rtp_offset: Where this class's L{RTP_PORTS} RTP ports start,
        after L{RTP_LOW}.
    """

    timeout = 30
    rtp_offset = 0

    def start(self, extra: str = "") -> None:
        self.file_app = AppServer({})
        app_port = self.file_app.listen()
        self.addCleanup(self.file_app.port.stopListening)
        self.sip_port, self.api_port = free_port(), free_port()
        self.path = self.configure("aiconnect-prov-", app_port, extra)
        self.boot()

    def configure(self, prefix: str, app_port: int, extra: str = "") -> Path:
        """
        Write the configuration (L{provisioning_config}) with this class's
        RTP ports, in a new directory.
        """
        low = RTP_LOW + self.rtp_offset
        directory = Path(tempfile.mkdtemp(prefix=prefix))
        return provisioning_config(directory, self.sip_port, self.api_port, app_port, (low, low + RTP_PORTS - 1), extra)

    def boot(self) -> None:
        """
        Build and start a service on C{self.path} (and its database).
        """
        self.service = build_service(config_mod.load(self.path), reactor)
        self.service.startService()
        self.addCleanup(self._stop, self.service)

    async def _stop(self, service: Any) -> None:
        if service.running:
            await service.stopService()

    def api(self, method: str, path: str, token: str, body: Any = None) -> Any:
        return api(self.api_port, method, path, token, body)

    async def provision(self, app: TenantApp, domain: str = DOMAIN, token: str = TOKEN) -> None:
        """
        C{PUT /admin/tenants/{domain}} (created: 201).
        """
        code, body = await self.api("PUT", "/admin/tenants/" + domain, ADMIN, tenant_object(domain, app, token))
        self.assertEqual(code, 201, body)

    async def put_trunk(self, srs: SrsPeer, match: str = "rec", domain: str = DOMAIN, token: str = TOKEN) -> int:
        """
        C{PUT /{domain}/trunks/{match}} with the tenant's own token.

        @return: The status (201 created, 200 replaced).
        """
        code, body = await self.api("PUT", "/%s/trunks/%s" % (domain, match), token, trunk_object(srs))
        self.assertIn(code, (200, 201), body)
        self.assertEqual(body["trunk"]["target"], "127.0.0.1:%d" % srs.port.getHost().port)
        return int(code)

    async def changes(self) -> dict[str, int]:
        """
        C{aiconnect_config_changes_total} by who, from C{GET /metrics}.
        """
        resp = await treq.get("http://127.0.0.1:%d/metrics" % self.api_port, persistent=False)
        text = (await resp.content()).decode()
        found = re.findall(r'^aiconnect_config_changes_total\{source="(\w+)"\} ([0-9.]+)$', text, re.M)
        return {by: int(float(count)) for by, count in found}

    async def call(self, domain: str = DOMAIN) -> Caller:
        """
        A call to C{domain}, admitted (200) and ACKed.
        """
        caller = Caller(self)
        self.assertEqual(await caller.start(domain), 200)
        return caller

    async def events(self, app: AppServer, names: list[str], session_id: str | None = None) -> None:
        """
        Wait until C{app} got the events C{names} (of C{session_id} when
        given), all signed with its tenant's secret.
        """

        def got() -> list[str]:
            return [e["event"] for e in app.events if session_id is None or e["sessionId"] == session_id]

        await wait_until(lambda: got() == names, 10, what=lambda: "events %r; got %r" % (names, got()))
        self.assertEqual(app.bad_signatures, 0)

    async def media_reaches(self, caller: Caller, srs: SrsPeer) -> None:
        """
        RTP the SRC sends now reaches C{srs} on both streams.
        """
        seen = [len(sink.received) for sink in srs.rtp]
        caller.send_rtp()
        await wait_until(lambda: all(len(s.received) > n for s, n in zip(srs.rtp, seen)), 5, what="RTP at the SRS")


class AdminTenantTests(ServiceCase):
    """
    SPEC s11: a tenant created through the admin API and a trunk created by
    the tenant itself are in force for the next call.
    """

    rtp_offset = 0

    async def test_created_tenant_and_trunk_take_calls(self) -> None:
        """
        Before the PUT an INVITE to the domain gets 404 (unknown tenant,
        SPEC s1); a refused PUT (400 naming the field) stores nothing, the
        file's tenant is read-only (409); after the PUT (and the tenant as
        a GET shows it, secrets C{"***"}, PUT back) the INVITE is
        admitted, newCall goes to the new tenant's callback URL signed
        with its own secret (and not the file tenant's), the forward it
        orders to C{sip:rec@<domain>} reaches the SRS of the trunk the
        tenant created with its own token, and every event arrives there.
        """
        self.start()
        app = TenantApp(forward_to("rec")).start(self)
        srs = srs_peer(self)
        self.assertEqual(await Caller(self).start(DOMAIN), 404)
        self.assertEqual(app.new_calls, [])

        bad = dict(tenant_object(DOMAIN, app, TOKEN), trunks=[dict(trunk_object(srs), match="rec", transport="sctp")])
        code, body = await self.api("PUT", "/admin/tenants/" + DOMAIN, ADMIN, bad)
        self.assertEqual((code, body["field"]), (400, "trunks[0].transport"))
        self.assertEqual((await self.api("GET", "/admin/tenants/" + DOMAIN, ADMIN))[0], 404)
        code, body = await self.api("PUT", "/admin/tenants/" + FILE_DOMAIN, ADMIN, tenant_object(FILE_DOMAIN, app, "x"))
        self.assertEqual(code, 409, body)

        await self.provision(app)
        code, shown = await self.api("GET", "/admin/tenants/" + DOMAIN, ADMIN)
        tenant = shown["tenant"]
        self.assertEqual((code, tenant["source"], tenant["signing_secret"], tenant["api_tokens"]), (200, "api", "***", ["***"]))
        # What a GET shows, sent back: the secrets are kept.
        del tenant["source"]
        code, body = await self.api("PUT", "/admin/tenants/" + DOMAIN, ADMIN, dict(tenant, callback_timeout=2.5))
        self.assertEqual(code, 200, body)
        self.assertEqual(await self.put_trunk(srs), 201)
        code, trunks = await self.api("GET", "/%s/trunks" % DOMAIN, TOKEN)
        self.assertEqual((code, [t["match"] for t in trunks["trunks"]]), (200, ["rec"]))

        caller = await self.call()
        await app.wait_for("newCall", 1)
        new_call = app.new_calls[0]
        self.assertEqual((new_call["tenant"], new_call["callId"]), (DOMAIN, caller.ids["call_id"]))
        headers, body = app.signed[0]
        self.assertTrue(verify_signature(app.secret, headers, body))
        self.assertFalse(verify_signature(SECRET, headers, body))
        await srs.wait_for("ACK")
        self.assertEqual(srs.requests[0].uri, "sip:rec@127.0.0.1:%d" % srs.port.getHost().port)
        await self.media_reaches(caller, srs)
        await caller.bye()
        await srs.wait_for("BYE")
        await self.events(app, ENDED)
        self.assertEqual({e["sessionId"] for e in app.events}, {new_call["sessionId"]})
        self.assertEqual((self.file_app.new_calls, self.file_app.events), ([], []))
        self.assertEqual(await self.changes(), {"admin": 2, "tenant": 1, "reload": 0})


class TrunkChangeTests(ServiceCase):
    """
    SPEC s11: a live call keeps the trunk it started with.
    """

    rtp_offset = 28

    async def test_target_changed_mid_call(self) -> None:
        """
        The trunk's target changes while a call forwards on it: the old SRS
        sees no request (no re-INVITE, no BYE) and keeps getting the audio;
        the next call's forward goes to the new target, and so does the
        first call's next forward (REST); the first call ends normally,
        with its BYE at the old SRS.
        """
        self.start()
        app = TenantApp(forward_to("rec")).start(self)
        old, new = srs_peer(self), srs_peer(self)
        await self.provision(app)
        await self.put_trunk(old)
        first = await self.call()
        await old.wait_for("ACK")
        await self.events(app, ENDED[:2])
        before = [r.method for r in old.requests]

        self.assertEqual(await self.put_trunk(new), 200)
        await self.media_reaches(first, old)
        second = await self.call()
        await new.wait_for("ACK")
        await self.events(app, ENDED[:2], app.new_calls[1]["sessionId"])
        self.assertEqual(app.events[-1]["target"], "127.0.0.1:%d;transport=udp" % new.port.getHost().port)
        await self.media_reaches(first, old)
        await self.media_reaches(second, new)
        self.assertEqual([r.method for r in old.requests], before)
        self.assertEqual(first.requests(), [])

        # The first call's next forward (REST) uses the new target too.
        order = dict(forward_to("rec")["startSIPRecForward"], sessionId=app.new_calls[0]["sessionId"])
        code, body = await self.api("POST", "/%s/startsiprecforward" % DOMAIN, TOKEN, order)
        self.assertEqual(code, 200, body)
        await new.wait_for("ACK", 2)
        await self.events(app, ENDED[:2] + ["SIPRECFORWARDSTARTED"], app.new_calls[0]["sessionId"])
        self.assertEqual([r.method for r in old.requests], before)

        await first.bye()
        await old.wait_for("BYE")
        await new.wait_for("BYE")
        first_events = ENDED[:2] + ["SIPRECFORWARDSTARTED", "SIPRECFORWARDSTOPPED", "SIPRECFORWARDSTOPPED", "SESSIONCOMPLETED"]
        await self.events(app, first_events, app.new_calls[0]["sessionId"])
        self.assertEqual([r.method for r in old.requests], before + ["BYE"])
        await second.bye()
        await new.wait_for("BYE", 2)


class RestartTests(ServiceCase):
    """
    SPEC s11: provisioned tenants and trunks are stored in the events
    database and survive a restart.
    """

    rtp_offset = 56

    async def test_restart_keeps_tenant_and_trunk(self) -> None:
        """
        Stop the service, build a new one on the same file and database:
        the tenant (source C{api}) and its trunk are there, and a call uses
        them (newCall at its application, the forward at its SRS).
        """
        self.start()
        app = TenantApp(forward_to("rec")).start(self)
        srs = srs_peer(self)
        await self.provision(app)
        await self.put_trunk(srs)
        await self.service.stopService()

        self.boot()
        code, body = await self.api("GET", "/admin/tenants", ADMIN)
        self.assertEqual(code, 200, body)
        self.assertEqual(
            [(t["domain"], t["source"]) for t in body["tenants"]], [(FILE_DOMAIN, "file"), (DOMAIN, "api")]
        )
        code, trunk = await self.api("GET", "/%s/trunks/rec" % DOMAIN, TOKEN)
        self.assertEqual((code, trunk["trunk"]["target"]), (200, "127.0.0.1:%d" % srs.port.getHost().port))
        caller = await self.call()
        await srs.wait_for("ACK")
        await caller.bye()
        await self.events(app, ENDED)


class CrossTenantTests(ServiceCase):
    """
    SPEC s6, s11: a tenant's credential reaches only that tenant's trunks
    and sessions; a tenant's credential is no admin's.
    """

    rtp_offset = 84

    async def test_cross_tenant_attempts(self) -> None:
        """
        The file tenant's token on the provisioned tenant's trunk routes:
        403, nothing changed (and its own trunks, the file's, are
        read-only: 409); its own path asking for the other tenant's
        live session by id: 404 (and its list does not show it); a tenant
        token on the admin routes: 401, nothing changed.
        """
        self.start()
        app = TenantApp({}).start(self)
        srs = srs_peer(self)
        await self.provision(app)
        await self.put_trunk(srs)
        caller = await self.call()
        await app.wait_for("newCall", 1)
        session_id = app.new_calls[0]["sessionId"]
        code, _ = await self.api("GET", "/%s/sessions/%s" % (DOMAIN, session_id), TOKEN)
        self.assertEqual(code, 200)

        trunk = "/%s/trunks/rec" % DOMAIN
        for method, path, body in [
            ("GET", "/%s/trunks" % DOMAIN, None),
            ("GET", trunk, None),
            ("PUT", trunk, {"target": "127.0.0.1:9", "transport": "udp"}),
            ("PUT", "/%s/trunks/other" % DOMAIN, {"target": "127.0.0.1:9", "transport": "udp"}),
            ("DELETE", trunk, None),
        ]:
            code, answer = await self.api(method, path, FILE_TOKEN, body)
            self.assertEqual(code, 403, (method, path, answer))
        code, shown = await self.api("GET", "/%s/trunks" % DOMAIN, TOKEN)
        self.assertEqual([(t["match"], t["target"]) for t in shown["trunks"]], [("rec", trunk_object(srs)["target"])])
        # Its own trunks are the file's: read-only through the API.
        code, answer = await self.api("PUT", "/%s/trunks/rec" % FILE_DOMAIN, FILE_TOKEN, trunk_object(srs))
        self.assertEqual(code, 409, answer)

        code, answer = await self.api("GET", "/%s/sessions/%s" % (FILE_DOMAIN, session_id), FILE_TOKEN)
        self.assertEqual(code, 404, answer)
        code, listed = await self.api("GET", "/%s/sessions" % FILE_DOMAIN, FILE_TOKEN)
        self.assertEqual((code, listed["sessions"]), (200, []))
        code, answer = await self.api("POST", "/%s/sessions/%s/hangup" % (FILE_DOMAIN, session_id), FILE_TOKEN, {})
        self.assertEqual(code, 404, answer)

        for method, path, body in [
            ("GET", "/admin/tenants", None),
            ("GET", "/admin/tenants/" + DOMAIN, None),
            ("PUT", "/admin/tenants/evil.example.org", tenant_object("evil.example.org", app, "evil")),
            ("DELETE", "/admin/tenants/" + DOMAIN, None),
        ]:
            for token in (TOKEN, FILE_TOKEN):
                code, answer = await self.api(method, path, token, body)
                self.assertEqual(code, 401, (method, path, answer))
        code, body = await self.api("GET", "/admin/tenants", ADMIN)
        self.assertEqual([t["domain"] for t in body["tenants"]], [FILE_DOMAIN, DOMAIN])
        self.assertEqual(caller.requests(), [])
        await caller.bye()
        await self.events(app, ["SESSIONSTARTED", "SESSIONCOMPLETED"])


class DeleteDuringCallTests(ServiceCase):
    """
    SPEC s11: deleting a tenant ends none of its calls.
    """

    rtp_offset = 112

    async def test_delete_tenant_during_call(self) -> None:
        """
        DELETE of a tenant while its call forwards: the SRC and the SRS get
        no request, the audio keeps flowing, the call ends normally with
        every event at the tenant's callback URL (signed with its secret);
        a new INVITE for the domain gets 404, and its token no longer
        opens its routes.
        """
        self.start()
        app = TenantApp(forward_to("rec")).start(self)
        srs = srs_peer(self)
        await self.provision(app)
        await self.put_trunk(srs)
        caller = await self.call()
        await srs.wait_for("ACK")
        await self.events(app, ENDED[:2])

        code, body = await self.api("DELETE", "/admin/tenants/" + DOMAIN, ADMIN)
        self.assertEqual((code, body), (200, {"success": True, "deleted": DOMAIN}))
        code, _ = await self.api("GET", "/admin/tenants/" + DOMAIN, ADMIN)
        self.assertEqual(code, 404)
        self.assertEqual(await Caller(self).start(DOMAIN), 404)
        code, _ = await self.api("GET", "/%s/trunks" % DOMAIN, TOKEN)
        self.assertEqual(code, 401)

        await self.media_reaches(caller, srs)
        self.assertEqual([r.method for r in srs.requests], ["INVITE", "ACK"])
        self.assertEqual(caller.requests(), [])
        await caller.bye()
        await srs.wait_for("BYE")
        await self.events(app, ENDED)
        self.assertEqual(app.events[-1]["sessionId"], app.new_calls[0]["sessionId"])
        self.assertEqual(len(app.new_calls), 1)


#: The file tenant's trunk in the configuration of L{SighupTests}.
FILE_TRUNK = """
  [[tenant.trunk]]
  match = "aiforward"
  target = "127.0.0.1:%d"
  transport = "udp"
"""
#: The admin token a reload puts in place of L{ADMIN}.
NEW_ADMIN = "new-adm1n-t0ken"
#: The tenant a reload adds.
ADDED = "added.example.org"
ADDED_TENANT = """
[[tenant]]
domain = "%s"
callback_url = "http://127.0.0.1:%%d"
callback_timeout = 3.0
api_tokens = ["added-t0ken"]
signing_secret = "%%s"
""" % ADDED


class SighupTests(ServiceCase):
    """
    SPEC s11: SIGHUP re-reads the file of a real C{twistd -n aiconnect}
    process; no call ends.
    """

    timeout = 60
    rtp_offset = 140

    def sighup_lines(self, server: Any) -> list[str]:
        return [line for line in server.output().splitlines() if "SIGHUP" in line]

    async def sighup(self, server: Any, count: int) -> str:
        """
        Send SIGHUP; wait for its log line (the C{count}th SIGHUP line).

        @return: The line.
        """
        server.signal(signal.SIGHUP)
        await wait_until(lambda: len(self.sighup_lines(server)) >= count, 10, what=server.output)
        await pause(0.1)
        lines = self.sighup_lines(server)
        self.assertEqual(len(lines), count, lines)
        return lines[-1]

    async def test_reload_during_call(self) -> None:
        """
        A call forwards on the file tenant's trunk; the file then gets a
        new tenant, another target for that trunk and another limit, and
        SIGHUP (the admin token changes too): one line names each change; the SRC and the SRS see
        nothing and the audio goes on; the new tenant takes the next call
        (its newCall signed with its own secret); the trunk's next forward
        goes to the new target; the first call ends normally with its
        events.  Then an invalid file: one line naming the key, the
        running configuration stays (the added tenant still takes calls),
        the process lives.  Then a new C{sip.udp_port}: logged as needing a
        restart, not applied (the old port still answers).  SIGTERM ends
        the process cleanly.
        """
        old, new = srs_peer(self), srs_peer(self)
        app = TenantApp(forward_to("aiforward", FILE_DOMAIN), secret=SECRET).start(self)
        added = TenantApp({}).start(self)
        self.sip_port, self.api_port = free_port(), free_port()
        path = self.configure("aiconnect-hup-", app.port.getHost().port, FILE_TRUNK % old.port.getHost().port)
        server = start_twistd(self, path)
        await wait_ready(self, server, self.sip_port)
        first = await self.call(FILE_DOMAIN)
        await old.wait_for("ACK")
        await self.events(app, ENDED[:2])
        before = [r.method for r in old.requests]

        text = path.read_text().replace("127.0.0.1:%d" % old.port.getHost().port, "127.0.0.1:%d" % new.port.getHost().port)
        text = text.replace('admin_tokens = ["%s"]' % ADMIN, 'admin_tokens = ["%s"]' % NEW_ADMIN)
        text += ADDED_TENANT % (added.port.getHost().port, added.secret) + "\n[limits]\nmax_streams_per_call = 1\n"
        path.write_text(text)
        line = await self.sighup(server, 1)
        self.assertIn(
            "reloaded: tenants added: %s; tenants changed: %s (trunk aiforward); limits changed: max_streams_per_call;"
            " api.admin_tokens changed"
            % (ADDED, FILE_DOMAIN),
            line,
        )
        self.assertNotIn(added.secret, server.output())
        await self.media_reaches(first, old)
        self.assertEqual([r.method for r in old.requests], before)
        self.assertEqual((first.requests(), new.requests), ([], []))
        self.assertEqual((await self.api("GET", "/admin/tenants", ADMIN))[0], 401)
        self.assertEqual(await self.changes(), {"admin": 0, "tenant": 0, "reload": 1})

        second = await self.call(ADDED)
        self.assertEqual(second.answered_ports()[1:], [0])
        await added.wait_for("newCall", 1)
        self.assertEqual(added.new_calls[0]["tenant"], ADDED)
        self.assertTrue(verify_signature(added.secret, *added.signed[0]))
        third = await self.call(FILE_DOMAIN)
        await new.wait_for("ACK")
        await self.media_reaches(third, new)
        await first.bye()
        await old.wait_for("BYE")
        await self.events(app, ENDED, app.new_calls[0]["sessionId"])
        self.assertEqual([r.method for r in old.requests], before + ["BYE"])
        for caller in (second, third):
            await caller.bye()
        await new.wait_for("BYE")
        await self.events(added, ["SESSIONSTARTED", "SESSIONCOMPLETED"])

        path.write_text(text.replace('callback_timeout = 3.0\napi_tokens = ["added', 'callback_timeout = "soon"\napi_tokens = ["added'))
        line = await self.sighup(server, 2)
        self.assertIn("refused, the running configuration stays: config: tenant[1].callback_timeout:", line)
        fourth = await self.call(ADDED)
        self.assertEqual(fourth.answered_ports()[1:], [0])
        await fourth.bye()
        self.assertTrue(server.alive())
        code, body = await self.api("GET", "/admin/tenants", NEW_ADMIN)
        self.assertEqual((code, [t["domain"] for t in body["tenants"]]), (200, [FILE_DOMAIN, ADDED]))

        moved = free_port()
        path.write_text(text.replace("udp_port = %d" % self.sip_port, "udp_port = %d" % moved))
        line = await self.sighup(server, 3)
        self.assertIn("reloaded: need a restart (not applied): sip.udp_port", line)
        self.assertEqual((await self.changes())["reload"], 1)
        self.assertEqual(await options(self.sip_port), 200)
        self.assertIsNone(await options(moved, 0.2))
        rc = await server.stop()
        self.assertIn(rc, (0, -signal.SIGTERM), server.output())
        self.assertNotIn("Traceback", server.output())


class ProbeTests(ServiceCase):
    """
    SPEC s11 with s13: the OPTIONS probes follow the trunks in force.
    """

    rtp_offset = 168

    async def test_probes_follow_trunk_changes(self) -> None:
        """
        A trunk created through the API with C{probe_interval} is probed;
        after its target changes only the new target is; after it is
        deleted, neither.
        """
        self.start()
        app = TenantApp({}).start(self)
        old, new = srs_peer(self), srs_peer(self)
        await self.provision(app)
        code, body = await self.api("PUT", "/%s/trunks/rec" % DOMAIN, TOKEN, trunk_object(old, probe_interval=0.1))
        self.assertEqual(code, 201, body)
        await old.wait_for("OPTIONS", 2, timeout=5)

        code, body = await self.api("PUT", "/%s/trunks/rec" % DOMAIN, TOKEN, trunk_object(new, probe_interval=0.1))
        self.assertEqual(code, 200, body)
        await new.wait_for("OPTIONS", 2, timeout=5)
        probed = old.count("OPTIONS")
        await pause(0.3)
        self.assertEqual(old.count("OPTIONS"), probed)

        code, body = await self.api("DELETE", "/%s/trunks/rec" % DOMAIN, TOKEN)
        self.assertEqual(code, 200, body)
        probed = new.count("OPTIONS")
        await pause(0.3)
        self.assertEqual(new.count("OPTIONS"), probed)
