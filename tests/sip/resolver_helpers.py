# -*- test-case-name: tests.sip.test_resolver,tests.sip.test_resolver_hosts -*-
"""
What the tests of L{aiconnect.sip.resolver} share: record builders, a
zone as a table (L{Table}), a reactor whose thread pool runs work at once
(L{FakeReactor}), a fake dnspython resolver (L{FakeDns}) and temporary
hosts files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import dns.rdatatype
import dns.rrset
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from aiconnect.sip.resolver import Answer, NaptrRecord, Query, SrvRecord


def fixed(*values: float) -> Callable[[], float]:
    """
    An rng returning C{values} in turn (then the last one forever).
    """
    it: Iterator[float] = iter(values)
    last = [values[-1]]

    def rng() -> float:
        try:
            last[0] = next(it)
        except StopIteration:
            pass
        return last[0]

    return rng


def srv_(priority: int, weight: int, port: int, target: str) -> SrvRecord:
    """
    An SRV record (RFC 2782), arguments in zone-file order.
    """
    return SrvRecord(priority, weight, port, target)


def naptr_(order: int, pref: int, service: str, replacement: str, flags: str = "S") -> NaptrRecord:
    """
    A NAPTR record (RFC 3403) with an empty regexp, C{S} flag by default.
    """
    return NaptrRecord(order, pref, flags, service, "", replacement)


class Table:
    """
    A zone as a dict of (name, type) -> records; a name absent under every
    type is NXDOMAIN; C{errors} maps (name, type) to a failure reason.
    """

    def __init__(self, records: dict[tuple[str, str], Sequence[Any]], errors: dict[tuple[str, str], str] | None = None) -> None:
        self.records = records
        self.errors = errors or {}
        self.asked: list[tuple[str, str]] = []

    def __call__(self, query: Query) -> Answer:
        key = (query.name, query.rdtype)
        self.asked.append(key)
        if key in self.errors:
            return Answer(error=self.errors[key])
        if key in self.records:
            return Answer(records=tuple(self.records[key]))
        if any(name == query.name for name, _ in self.records):
            return Answer()
        return Answer(nxdomain=True)


class SyncPool:
    """
    A thread pool running its work at once, on the calling thread, and
    counting the calls.
    """

    def __init__(self) -> None:
        self.calls = 0

    def callInThreadWithCallback(self, on_result: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        self.calls += 1
        try:
            result = f(*args, **kwargs)
        except BaseException:
            on_result(False, Failure())
        else:
            on_result(True, result)


class FakeReactor(Clock):
    """
    A Clock that also runs C{callFromThread} at once.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pool = SyncPool()

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)

    def getThreadPool(self) -> SyncPool:
        return self.pool


class FakeAnswer:
    """
    What C{dns.resolver.Resolver.resolve} returns: only its C{rrset}.
    """

    def __init__(self, rrset: Any) -> None:
        self.rrset = rrset


class FakeDns:
    """
    A stand-in for C{dns.resolver.Resolver}: answers from text records or
    raises the exception configured for a name.
    """

    def __init__(self, records: dict[tuple[str, str], list[str]], raises: dict[str, Exception] | None = None, ttl: int = 60) -> None:
        self.records = records
        self.raises = raises or {}
        self.ttl = ttl
        self.asked: list[tuple[str, str]] = []

    def resolve(self, name: Any, rdtype: Any, search: bool, raise_on_no_answer: bool, lifetime: float) -> FakeAnswer:
        text = name.to_text(omit_final_dot=True)
        kind = dns.rdatatype.to_text(rdtype)
        self.asked.append((text, kind))
        assert name.is_absolute() and search is False and raise_on_no_answer is False
        if text in self.raises:
            raise self.raises[text]
        if (text, kind) in self.records:
            return FakeAnswer(dns.rrset.from_text_list(text + ".", self.ttl, "IN", kind, self.records[(text, kind)]))
        return FakeAnswer(None)


def temp_path(test: SynchronousTestCase) -> str:
    """
    A path in a fresh temporary directory removed after the test.
    """
    directory = tempfile.mkdtemp(prefix="aiconnect-hosts-")
    test.addCleanup(shutil.rmtree, directory, True)
    return os.path.join(directory, "hosts")


def write_hosts(test: SynchronousTestCase, text: str, path: str | None = None) -> str:
    """
    Write a hosts file (in a fresh temporary directory unless C{path} is
    given).

    @return: Its path.
    """
    path = path or temp_path(test)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path
