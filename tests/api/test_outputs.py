# -*- test-case-name: tests.api.test_outputs -*-
"""
Tests for the output routes of L{aiconnect.api.routes}: C{startstream},
C{stopstream}, C{startrecording}, C{stoprecording} (SPEC s8, s9),
C{pause} and C{resume} (SPEC s10) against a fake runner, and the recording
file routes against a stand-in of L{aiconnect.outputs.files}.
"""

from __future__ import annotations

import os
from typing import Any

import treq
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from aiconnect import events
from aiconnect.api.outputs import MAX_OUTPUT_ID, MAX_TARGET_IDS
from aiconnect.call import OrderRefused
from aiconnect.outputs.orders import RecordingOrder, StreamOrder
from tests.api.helpers import (
    BAD_RECORDING_FIELDS,
    BAD_STREAM_FIELDS,
    DOMAIN,
    OTHER_DOMAIN,
    OTHER_TOKEN,
    STREAM_URL,
    TOKEN,
    UPLOAD_URL,
    FakeOutputRunner,
    FakeRecordingFiles,
    FakeRunnerRegistry,
    OutputsTestCase,
    bearer,
    make_config,
)
from aiconnect.api import ApiServer

REC_ID = "rec_20261202_0123456789abcdef"


class StartOutputTests(OutputsTestCase):
    """
    Tests for C{POST /{domain}/startstream} and C{/startrecording}.
    """

    def start(self, action: str, token: str | None = TOKEN, session_id: str = "ses_test1", **fields: Any) -> tuple[int, Any, Any]:
        """
        Post a start for C{session_id} with C{fields}.
        """
        return self.client.call("POST", f"/{DOMAIN}/{action}", token=token, body={"sessionId": session_id, **fields})

    def test_stream_started(self) -> None:
        """
        A valid stream order answers 200 with the runner's stream id, and the runner got the parsed order.
        """
        code, body, _ = self.start(
            "startstream", url=STREAM_URL, format="pcmu", headers={"Authorization": "Bearer x"}, streamReferenceId={"t": 1}
        )
        self.assertEqual((code, body), (200, {"success": True, "streamId": "str_1"}))
        expected = StreamOrder(url=STREAM_URL, format="PCMU", headers=(("Authorization", "Bearer x"),), reference_id={"t": 1})
        self.assertEqual(self.runner.orders, [("stream", expected)])

    def test_recording_started(self) -> None:
        """
        A valid recording order answers 200 with the runner's recording id; an empty order means the defaults.
        """
        code, body, _ = self.start("startrecording", tracks="caller", encoding="PCMA", uploadUrl=UPLOAD_URL)
        self.assertEqual((code, body), (200, {"success": True, "recordingId": "rec_20261202_0000000000000001"}))
        code, body, _ = self.start("startrecording")
        self.assertEqual(code, 200)
        self.assertEqual(
            self.runner.orders,
            [("recording", RecordingOrder(tracks="caller", encoding="PCMA", upload_url=UPLOAD_URL)), ("recording", RecordingOrder())],
        )

    def test_bad_fields(self) -> None:
        """
        Each invalid field answers 400 naming it, and nothing is ordered.
        """
        for action, table in (("startstream", BAD_STREAM_FIELDS), ("startrecording", BAD_RECORDING_FIELDS)):
            for why, fields, field in table:
                with self.subTest(f"{action}: {why}"):
                    self.assertError(self.start(action, **fields), 400, field)
        self.assertEqual(self.runner.orders, [])

    def test_session_id(self) -> None:
        """
        A missing sessionId answers 400; an unknown or another tenant's session 404; nothing is ordered.
        """
        for action, fields in (("startstream", {"url": STREAM_URL}), ("startrecording", {})):
            with self.subTest(action):
                self.assertError(self.client.call("POST", f"/{DOMAIN}/{action}", body=fields), 400, "sessionId")
                self.assertError(self.start(action, session_id="ses_nope", **fields), 404, "sessionId")
                self.assertError(self.start(action, session_id="ses_other", **fields), 404, "sessionId")
        self.assertEqual((self.runner.orders, self.other_runner.orders), ([], []))

    def test_credentials(self) -> None:
        """
        No credential or a wrong one answers 401, another tenant's 403; that tenant's own route works with its token.
        """
        for token, status in ((None, 401), ("tok-wrong", 401), (OTHER_TOKEN, 403)):
            with self.subTest(token=token):
                self.assertError(self.start("startstream", token=token, url=STREAM_URL), status)
        code, body, _ = self.client.call(
            "POST", f"/{OTHER_DOMAIN}/startrecording", token=OTHER_TOKEN, body={"sessionId": "ses_other"}
        )
        self.assertEqual(code, 200, body)
        self.assertEqual(len(self.other_runner.orders), 1)
        self.assertEqual(self.runner.orders, [])

    def test_refused(self) -> None:
        """
        A session that is ending answers 409 naming sessionId; a limit reached answers 409 naming no field.
        """
        self.runner.refusal = OrderRefused("ended", "the session has ended")
        self.assertError(self.start("startstream", url=STREAM_URL), 409, "sessionId")
        self.runner.refusal = OrderRefused("limit", "max_outputs_per_call (8) reached", limit="max_outputs_per_call")
        code, body, _ = self.start("startrecording")
        self.assertError((code, body, _), 409, None)
        self.assertIn("max_outputs_per_call", body["error"])

    def test_bad_body(self) -> None:
        """
        A body that is not a JSON object answers 400 naming body.
        """
        for action in ("startstream", "startrecording"):
            self.assertError(self.client.call("POST", f"/{DOMAIN}/{action}", data=b"[]"), 400, "body")

    def test_wrong_method(self) -> None:
        """
        GET on a POST route answers 405.
        """
        code, _, response = self.client.call("GET", f"/{DOMAIN}/startstream")
        self.assertEqual(code, 405)
        self.assertIn(b"POST", response.headers.getRawHeaders(b"allow")[0])


class StopOutputTests(OutputsTestCase):
    """
    Tests for C{POST /{domain}/stopstream} and C{/stoprecording}.
    """

    def stop(self, action: str, **fields: Any) -> tuple[int, Any, Any]:
        """
        Post a stop for C{ses_test1}.
        """
        return self.client.call("POST", f"/{DOMAIN}/{action}", body={"sessionId": "ses_test1", **fields})

    def test_stop_one_and_all(self) -> None:
        """
        With an id only that output is stopped; without, all of the kind; stopped by the API.
        """
        first = self.runner.order_output("stream", None)
        second = self.runner.order_output("stream", None)
        recording = self.runner.order_output("recording", None)
        self.assertEqual(self.stop("stopstream", streamId=first)[1], {"success": True, "stopped": [first]})
        self.assertEqual(self.stop("stopstream")[1], {"success": True, "stopped": [second]})
        self.assertEqual(self.stop("stopstream", streamId=None)[1], {"success": True, "stopped": []})
        self.assertEqual(self.stop("stoprecording", recordingId=recording)[1], {"success": True, "stopped": [recording]})
        self.assertEqual(
            self.runner.calls,
            [
                ("stop", ("stream", first, events.STOPPED_BY_API)),
                ("stop", ("stream", None, events.STOPPED_BY_API)),
                ("stop", ("stream", None, events.STOPPED_BY_API)),
                ("stop", ("recording", recording, events.STOPPED_BY_API)),
            ],
        )

    def test_unknown_id(self) -> None:
        """
        An id the session does not know answers 404 naming streamId / recordingId.
        """
        self.assertError(self.stop("stopstream", streamId="str_nope"), 404, "streamId")
        self.assertError(self.stop("stoprecording", recordingId=REC_ID), 404, "recordingId")

    def test_bad_input(self) -> None:
        """
        A bad id, an id of the other kind or an unknown field answers 400 naming it; no stop reaches the runner.
        """
        for action, field in (("stopstream", "streamId"), ("stoprecording", "recordingId")):
            with self.subTest(action):
                for value in (5, "", ["x"], "x" * (MAX_OUTPUT_ID + 1)):
                    self.assertError(self.stop(action, **{field: value}), 400, field)
                self.assertError(self.stop(action, forwardId="fwd_1"), 400, "forwardId")
                self.assertError(self.client.call("POST", f"/{DOMAIN}/{action}", body={field: "x"}), 400, "sessionId")
        self.assertError(self.stop("stopstream", recordingId=REC_ID), 400, "recordingId")
        self.assertEqual(self.runner.calls, [])
        self.assertEqual(self.stop("stopstream", streamId="x" * MAX_OUTPUT_ID)[0], 404)

    def test_other_tenant(self) -> None:
        """
        Another tenant's session answers 404, its domain with our token 403; its outputs are untouched.
        """
        self.other_runner.order_output("stream", None)
        self.assertError(
            self.client.call("POST", f"/{DOMAIN}/stopstream", body={"sessionId": "ses_other"}), 404, "sessionId"
        )
        self.assertError(
            self.client.call("POST", f"/{OTHER_DOMAIN}/stopstream", body={"sessionId": "ses_other"}), 403
        )
        self.assertEqual(self.other_runner.calls, [])


class PauseResumeTests(OutputsTestCase):
    """
    Tests for C{POST /{domain}/pause} and C{/resume}.
    """

    def setUp(self) -> None:
        """
        The session has a forward, a stream and a recording.
        """
        super().setUp()
        self.runner.outputs["forward"]["fwd_1"] = True
        self.stream = self.runner.order_output("stream", None)
        self.recording = self.runner.order_output("recording", None)

    def post(self, action: str, **fields: Any) -> tuple[int, Any, Any]:
        """
        Post C{action} for C{ses_test1}.
        """
        return self.client.call("POST", f"/{DOMAIN}/{action}", body={"sessionId": "ses_test1", **fields})

    def test_all(self) -> None:
        """
        Without lists every output of the session is paused (resumed), and the answer lists them by kind.
        """
        everything = {"forwards": ["fwd_1"], "streams": [self.stream], "recordings": [self.recording]}
        self.assertEqual(self.post("pause")[:2], (200, {"success": True, "paused": everything}))
        self.assertEqual(self.post("pause")[:2], (200, {"success": True, "paused": everything}))
        self.assertEqual(self.post("resume")[:2], (200, {"success": True, "resumed": everything}))
        self.assertEqual([c for c in self.runner.calls], [("pause", None), ("pause", None), ("resume", None)])

    def test_some(self) -> None:
        """
        Lists name the outputs; a kind without a list (or null) is not touched; an empty list is allowed.
        """
        code, body, _ = self.post("pause", streamIds=[self.stream], forwardIds=[], recordingIds=None)
        self.assertEqual((code, body), (200, {"success": True, "paused": {"forwards": [], "streams": [self.stream], "recordings": []}}))
        code, body, _ = self.post("resume", recordingIds=[self.recording])
        self.assertEqual(body["resumed"], {"forwards": [], "streams": [], "recordings": [self.recording]})
        self.assertEqual(
            self.runner.calls,
            [
                ("pause", {"forward": [], "stream": [self.stream], "recording": []}),
                ("resume", {"forward": [], "stream": [], "recording": [self.recording]}),
            ],
        )

    def test_unknown_ids(self) -> None:
        """
        An id the session does not know answers 404 naming the list it was in.
        """
        for action in ("pause", "resume"):
            with self.subTest(action):
                self.assertError(self.post(action, forwardIds=["fwd_nope"]), 404, "forwardIds")
                self.assertError(self.post(action, streamIds=[self.stream, "str_nope"]), 404, "streamIds")
                self.assertError(self.post(action, recordingIds=[self.stream]), 404, "recordingIds")

    def test_bad_lists(self) -> None:
        """
        A list that is not a list of at most 32 distinct non-empty strings, or an unknown field, answers 400 naming it.
        """
        too_many = [f"str_{i}" for i in range(MAX_TARGET_IDS + 1)]
        cases = [
            ({"streamIds": "str_1"}, "streamIds"),
            ({"forwardIds": {"fwd_1": True}}, "forwardIds"),
            ({"recordingIds": too_many}, "recordingIds"),
            ({"streamIds": ["str_1", 2]}, "streamIds[1]"),
            ({"streamIds": [""]}, "streamIds[0]"),
            ({"streamIds": ["x" * (MAX_OUTPUT_ID + 1)]}, "streamIds[0]"),
            ({"forwardIds": ["fwd_1", "fwd_1"]}, "forwardIds[1]"),
            ({"streamId": "str_1"}, "streamId"),
            ({"all": True}, "all"),
        ]
        for action in ("pause", "resume"):
            for fields, field in cases:
                with self.subTest(f"{action} {field}"):
                    self.assertError(self.post(action, **fields), 400, field)
        self.assertEqual(self.runner.calls, [])
        self.assertEqual(self.post("pause", streamIds=too_many[:MAX_TARGET_IDS])[1]["field"], "streamIds")

    def test_session_and_credentials(self) -> None:
        """
        A missing sessionId answers 400, another tenant's session 404, another tenant's token 403.
        """
        for action in ("pause", "resume"):
            with self.subTest(action):
                self.assertError(self.client.call("POST", f"/{DOMAIN}/{action}", body={}), 400, "sessionId")
                self.assertError(
                    self.client.call("POST", f"/{DOMAIN}/{action}", body={"sessionId": "ses_other"}), 404, "sessionId"
                )
                self.assertError(
                    self.client.call("POST", f"/{DOMAIN}/{action}", token=OTHER_TOKEN, body={"sessionId": "ses_test1"}),
                    403,
                )
        self.assertEqual((self.runner.calls, self.other_runner.calls), ([], []))


class RecordingFileTests(OutputsTestCase):
    """
    Tests for C{GET} and C{DELETE /{domain}/recordings/{recordingId}}.
    """

    DATA = b"RIFF" + bytes(range(256)) * 4

    def setUp(self) -> None:
        """
        One recording of the first tenant, one of the second.
        """
        super().setUp()
        self.path = self.files.add(DOMAIN, REC_ID, self.DATA)
        self.other_id = "rec_20261202_fedcba9876543210"
        self.files.add(OTHER_DOMAIN, self.other_id, b"other")

    def test_unknown(self) -> None:
        """
        An unknown id, another tenant's, or one not shaped like a recording id answers 404 naming recordingId
        (the files module refuses odd ids before any file system access: tests.outputs.test_files).
        """
        for recording_id in ("rec_20261202_0000000000000000", self.other_id):
            with self.subTest(recording_id):
                code, body, _ = self.client.call("GET", f"/{DOMAIN}/recordings/{recording_id}")
                self.assertError((code, body, _), 404, "recordingId")
        for recording_id in ("rec_x", REC_ID + ".wav", "rec_20261202_....", REC_ID.upper(), "." + REC_ID, REC_ID + "%00"):
            with self.subTest(recording_id):
                self.assertError(self.client.call("GET", f"/{DOMAIN}/recordings/{recording_id}"), 404, "recordingId")
                self.assertError(self.client.call("DELETE", f"/{DOMAIN}/recordings/{recording_id}"), 404, "recordingId")
        for path in ("..", "%2e%2e%2fetc", "rec_20261202_..%2f..%2fx", f"{REC_ID}/x"):
            with self.subTest(path):
                self.assertEqual(self.client.call("GET", f"/{DOMAIN}/recordings/{path}")[0], 404)

    def test_credentials(self) -> None:
        """
        Without a credential (401), or with another tenant's (403), GET and DELETE are refused and the file stays.
        """
        for token, status in ((None, 401), (OTHER_TOKEN, 403)):
            with self.subTest(token=token):
                self.assertError(self.client.call("GET", f"/{DOMAIN}/recordings/{REC_ID}", token=token), status)
                self.assertError(self.client.call("DELETE", f"/{DOMAIN}/recordings/{REC_ID}", token=token), status)
        self.assertTrue(os.path.exists(self.path))

    def test_delete(self) -> None:
        """
        DELETE removes the file and answers 200; then GET and DELETE answer 404.
        """
        code, body, _ = self.client.call("DELETE", f"/{DOMAIN}/recordings/{REC_ID}")
        self.assertEqual((code, body), (200, {"success": True, "deleted": REC_ID}))
        self.assertFalse(os.path.exists(self.path))
        self.assertError(self.client.call("GET", f"/{DOMAIN}/recordings/{REC_ID}"), 404, "recordingId")
        self.assertError(self.client.call("DELETE", f"/{DOMAIN}/recordings/{REC_ID}"), 404, "recordingId")

    def test_delete_other_tenants(self) -> None:
        """
        Another tenant's recording cannot be deleted: 404, and it stays.
        """
        self.assertError(self.client.call("DELETE", f"/{DOMAIN}/recordings/{self.other_id}"), 404, "recordingId")
        self.assertIn((OTHER_DOMAIN, self.other_id), self.files.paths)

    def test_delete_busy(self) -> None:
        """
        A recording still being written answers 409 and stays.
        """
        self.files.busy.add(REC_ID)
        self.assertError(self.client.call("DELETE", f"/{DOMAIN}/recordings/{REC_ID}"), 409, "recordingId")
        self.assertTrue(os.path.exists(self.path))


class RecordingDownloadTests(TestCase):
    """
    C{GET /{domain}/recordings/{recordingId}} over a real socket: the file
    resource writes through a producer, which needs a running reactor.
    """

    DATA = b"RIFF" + bytes(range(256)) * 4

    def setUp(self) -> None:
        """
        A server on 127.0.0.1 (port picked by the system) with one recording.
        """
        self.config = make_config(self, with_jwt=False)
        self.files = FakeRecordingFiles(self)
        self.files.add(DOMAIN, REC_ID, self.DATA)
        registry = FakeRunnerRegistry(FakeOutputRunner(DOMAIN, "ses_test1"))
        server = ApiServer(self.config, registry, recording_files=self.files)
        port = reactor.listenTCP(0, Site(server.app.resource()), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        self.url = f"http://127.0.0.1:{port.getHost().port}/{DOMAIN}/recordings/{REC_ID}"

    async def get(self, **headers: str) -> tuple[Any, bytes]:
        """
        @return: The response and body of a GET with the tenant's token.
        """
        response = await treq.get(self.url, headers={**bearer(TOKEN), **headers}, persistent=False)
        return response, await treq.content(response)

    async def test_get(self) -> None:
        """
        GET returns the file as audio/wav, from the configured directory, never cached.
        """
        response, body = await self.get()
        self.assertEqual((response.code, body), (200, self.DATA))
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [b"audio/wav"])
        self.assertEqual(response.headers.getRawHeaders(b"cache-control"), [b"no-store"])
        self.assertEqual(self.files.directories, [self.config.recording.directory])

    async def test_range(self) -> None:
        """
        A Range request answers 206 with exactly those bytes.
        """
        response, body = await self.get(Range="bytes=4-13")
        self.assertEqual((response.code, body), (206, self.DATA[4:14]))
        self.assertEqual(response.headers.getRawHeaders(b"content-range"), [f"bytes 4-13/{len(self.DATA)}".encode()])
