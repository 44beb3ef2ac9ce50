# -*- test-case-name: tests.outputs.test_upload -*-
"""
The C{uploadUrl} of a recording (SPEC s9): after the recording ends its
file is sent there with HTTP PUT (a pre-signed object-store URL), retried
like events (SPEC s2).

L{Uploader.upload} streams the file from disk (C{Content-Type: audio/wav},
C{Content-Length}); a 2xx answer is done.  Another answer (except 410
Gone, final as for events) or a connection error is retried after a
doubling back-off (C{retry_initial}, at most C{retry_max}), or after the
answer's C{Retry-After}, until C{retry_for} seconds after the first
attempt.  Each attempt has C{timeout} seconds, on the injected reactor.

The URL's query string carries the credentials of a pre-signed URL: logs
and results only ever show L{public_url}.
"""

from __future__ import annotations

from typing import Any

import treq
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import FileBodyProducer

from aiconnect.text import public_url
from aiconnect.webhooks.http import backoff, describe_failure, parse_retry_after

__all__ = ["Uploader"]


class _Upload:
    """
    One file's upload: its attempts and the timer between them.
    """

    log = Logger()

    def __init__(self, uploader: Uploader, path: str, url: str) -> None:
        self._uploader = uploader
        self._path = path
        self._url = url
        self._public = public_url(url)
        self._attempts = 0
        self._deadline = uploader.reactor.seconds() + uploader.retry_for
        self._timer: IDelayedCall | None = None
        self._request: Deferred[Any] | None = None
        self._done = False
        self.result: Deferred[int | str] = Deferred(self._cancel)

    def attempt(self) -> None:
        self._timer = None
        self._attempts += 1
        up = self._uploader
        try:
            body = open(self._path, "rb")
        except OSError as e:
            self._finish("cannot read file: %s" % (e.strerror,))
            return
        headers = {"Content-Type": "audio/wav"}
        producer = FileBodyProducer(body, cooperator=up.cooperator)
        d = defer.maybeDeferred(up.http.put, self._url, data=producer, headers=headers, allow_redirects=False)
        d.addCallback(self._drain)
        d.addTimeout(up.timeout, up.reactor)
        d.addBoth(self._closed, body)
        self._request = d
        d.addCallbacks(self._answered, self._failed)
        d.addErrback(self._bug)

    @staticmethod
    def _drain(response: Any) -> Deferred[Any]:
        # Read and discard the answer (bounded in time by the timeout).
        return treq.collect(response, lambda data: None).addCallback(lambda _: response)

    @staticmethod
    def _closed(result: Any, body: Any) -> Any:
        body.close()
        return result

    def _answered(self, response: Any) -> None:
        self._request = None
        status = int(response.code)
        if 200 <= status < 300 or status == 410:
            self._finish(status)
            return
        values = response.headers.getRawHeaders(b"retry-after") or []
        retry_after = parse_retry_after(values[0].decode("latin-1"), self._uploader.reactor.seconds()) if values else None
        self._retry("HTTP %d" % (status,), status, retry_after)

    def _failed(self, failure: Failure) -> None:
        self._request = None
        if self._done:
            return
        reason = describe_failure(failure, self._uploader.timeout)
        self._retry(reason, reason, None)

    def _retry(self, reason: str, outcome: int | str, retry_after: float | None) -> None:
        up = self._uploader
        now = up.reactor.seconds()
        delay = retry_after if retry_after is not None else backoff(self._attempts, up.retry_initial, up.retry_max)
        if now >= self._deadline or (retry_after is not None and now + delay > self._deadline):
            self._finish(outcome)
            return
        delay = min(delay, self._deadline - now)
        self.log.info(
            "Upload of {file} to {url} failed ({reason}); attempt {attempts}, next in {delay:.3f} s",
            file=self._path,
            url=self._public,
            reason=reason,
            attempts=self._attempts,
            delay=delay,
        )
        self._timer = up.reactor.callLater(delay, self.attempt)

    def _finish(self, outcome: int | str) -> None:
        if self._done:
            return
        self._done = True
        self.log.info(
            "Upload of {file} to {url} ended: {outcome} after {attempts} attempt(s)",
            file=self._path,
            url=self._public,
            outcome=outcome,
            attempts=self._attempts,
        )
        self.result.callback(outcome)

    def _cancel(self, d: Deferred[int | str]) -> None:
        # Cancelling the result fails it with CancelledError; stop retrying.
        self._done = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self._request is not None:
            request, self._request = self._request, None
            request.cancel()

    def _bug(self, failure: Failure) -> None:
        self.log.failure("Uploader bug", failure, url=self._public)
        self._finish("internal error")


class Uploader:
    """
    PUTs recordings to their C{uploadUrl}.

    @ivar reactor: For timers and timeouts.
    @ivar http: The treq-shaped client (C{put(url, data=, headers=,
        allow_redirects=)}).
    @ivar cooperator: Reads the files being sent, on C{reactor}.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        http_client: Any = None,
        retry_initial: float = 1.0,
        retry_max: float = 300.0,
        retry_for: float = 86400.0,
        timeout: float = 60.0,
    ) -> None:
        """
        @param reactor: For timers and timeouts.
        @param http_client: treq-shaped; the C{treq} module when L{None}.
        @param retry_initial: First back-off delay, seconds (doubling).
        @param retry_max: Largest back-off delay, seconds.
        @param retry_for: Seconds after the first attempt a failure is
            still retried.
        @param timeout: Seconds one attempt may take (connect, send the
            file, read the answer).
        """
        self.reactor = reactor
        self.http = http_client if http_client is not None else treq
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.retry_for = retry_for
        self.timeout = timeout
        # Streams files in 64 KiB steps, one per turn of this reactor.
        self.cooperator = Cooperator(scheduler=lambda step: reactor.callLater(0, step))

    def upload(self, path: str, url: str) -> Deferred[int | str]:
        """
        PUT the file at C{path} to C{url}, retrying.

        @return: A Deferred firing with the status of the last answer (2xx
            when done) or, when the last attempt got no answer, a reason
            (C{timeout after 60 s}, C{connection failed: ...}); it never
            fails, except with C{CancelledError} when cancelled.
        """
        upload = _Upload(self, path, url)
        upload.attempt()
        return upload.result
