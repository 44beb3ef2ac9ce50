# -*- test-case-name: tests.integration.test_mandatory,tests.siprec.test_pending -*-
"""
The SRC's INVITE between the application's C{newCall} answer and our final
response: L{PendingInvite} carries out what the L{aiconnect.call.Call}
decides (SPEC s2: 200 OK; SPEC s13: 503 with C{Reason} when a mandatory
forward failed), and bounds the wait for mandatory forwards with
C{[limits] mandatory_wait}, so that a hung DNS lookup cannot hold the
INVITE for ever.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from aiconnect.call_mandatory import REASON_HEADER, MandatoryWaitExpired
from aiconnect.sip.ua import ServerInvite

__all__ = ["PendingInvite"]


class PendingInvite:
    """
    The runner's L{aiconnect.runner.InboundAnswerer} for one SRC INVITE,
    and a L{aiconnect.runner.Finisher} (the cap ends with the session).
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        runner: Any,
        invite: ServerInvite,
        accept: Callable[[], None],
        stats: dict[str, int],
    ) -> None:
        """
        @param reactor: IReactorTime (the cap's timer).
        @param runner: the session's L{aiconnect.runner.CallRunner}
            (L{MandatoryWaitExpired} is fed to it).
        @param invite: the SRC's INVITE.
        @param accept: sends our 200 OK (L{aiconnect.siprec.srs.SrsService}
            binds the session's dialog to it).
        @param stats: the SRS's counters (C{rejected},
            C{mandatory_rejected}).
        """
        self.reactor = reactor
        self.runner = runner
        self.invite = invite
        self.accept = accept
        self.stats = stats
        self._cap: Any = None

    def hold(self, seconds: float) -> None:
        """
        The answer waits for mandatory forwards: tell the Call if it still
        does after C{seconds}.
        """
        call = self.runner.call
        self.log.info(
            "answer held for mandatory forwards session_id={session_id} call_id={call_id}",
            session_id=call.session_id,
            call_id=call.call_id,
        )
        self._cap = self.reactor.callLater(seconds, self._expired)

    def _expired(self) -> None:
        self._cap = None
        if not self.invite.answered:
            self.runner.feed(MandatoryWaitExpired(now=self.reactor.seconds()))

    def _release(self) -> None:
        if self._cap is not None and self._cap.active():
            self._cap.cancel()
        self._cap = None

    def answer(self) -> None:
        """
        200 OK to the SRC (unless a CANCEL came first).
        """
        self._release()
        if self.invite.cancelled or self.invite.answered:
            return
        self.accept()

    def reject(self, status: int, reason: str, headers: tuple[tuple[str, str], ...]) -> None:
        """
        A final non-2xx response to the SRC's INVITE (SPEC s13).
        """
        self._release()
        if self.invite.answered:
            return
        mandatory = REASON_HEADER in headers
        self.stats["rejected"] += 1
        if mandatory:
            self.stats["mandatory_rejected"] += 1
        call = self.runner.call
        self.log.warn(
            "INVITE rejected session_id={session_id} call_id={call_id} status={status} mandatory_failed={mandatory}",
            session_id=call.session_id,
            call_id=call.call_id,
            status=status,
            mandatory=mandatory,
        )
        self.invite.reject(status, reason, headers=headers)

    def session_finished(self, runner: Any) -> None:
        """
        The session ended: no cap any more.
        """
        self._release()
