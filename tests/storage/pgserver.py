"""
A real PostgreSQL server for the storage tests: C{initdb} in a temporary
directory, C{pg_ctl start} on a free port of 127.0.0.1 (and a unix socket
in that directory), as the C{postgres} system user when the tests run as
root (CI does; PostgreSQL refuses to run as root).  Started once per test
process, on first use, and stopped (its directory removed) at exit; each
test gets a database of its own (L{PostgresTestCase}).

Where the server binaries (C{/usr/lib/postgresql/*/bin}, or C{initdb} on
C{PATH}) or psycopg are missing, the tests skip, saying why.
"""

from __future__ import annotations

import atexit
import glob
import importlib.util
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from typing import Any
from urllib.parse import quote

from twisted.enterprise.adbapi import ConnectionPool
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase

from aiconnect.storage.pool import connect_pool
from aiconnect.storage.schema import migrate
from tests.integration.helpers import free_port

__all__ = ["MigratedTestCase", "PostgresServer", "PostgresTestCase", "shared_server", "wait_until"]

#: Bounds of every command run here, in seconds.
COMMAND_TIMEOUT = 60


def find_bindir() -> str | None:
    """
    @return: The directory of C{initdb}, C{pg_ctl} and C{postgres} (the
        newest under C{/usr/lib/postgresql}, else C{PATH}), or L{None}.
    """
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


class PostgresServer:
    """
    One throw-away PostgreSQL server (module docstring).

    @ivar port: Its TCP port on 127.0.0.1.
    @ivar user: The superuser the tests connect as (password
        authentication over TCP).
    """

    user = "aiconnect"

    def __init__(self, bindir: str) -> None:
        self._bindir = bindir
        self.password = secrets.token_urlsafe(12) + "/:@"
        self.port = 0
        self._as: list[str] = []
        self._owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._owner = pwd.getpwnam("postgres")
            except KeyError:
                raise SkipTest("running as root and there is no 'postgres' user to run PostgreSQL as") from None
            if shutil.which("runuser"):
                self._as = ["runuser", "-u", "postgres", "--"]
            else:
                self._as = ["setpriv", f"--reuid={self._owner.pw_uid}", f"--regid={self._owner.pw_gid}", "--clear-groups"]
        # /tmp: a directory the postgres user can reach.
        self.directory = tempfile.mkdtemp(prefix="aiconnect-pg-", dir="/tmp" if self._owner else None)
        self._data = os.path.join(self.directory, "data")
        self._counter = 0
        self._running = False

    def _run(self, *command: str) -> None:
        done = subprocess.run(
            [*self._as, *command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"{os.path.basename(command[0])} failed ({done.returncode}): {done.stdout.decode(errors='replace')[-2000:]}")

    def start(self) -> None:
        """
        initdb, then pg_ctl start (three tries on a new port each), waiting
        until it accepts connections.
        """
        pwfile = os.path.join(self.directory, "pwfile")
        with open(pwfile, "w") as f:
            f.write(self.password + "\n")
        if self._owner is not None:
            os.chown(self.directory, self._owner.pw_uid, self._owner.pw_gid)
            os.chown(pwfile, self._owner.pw_uid, self._owner.pw_gid)
        os.chmod(self.directory, 0o700)
        initdb = os.path.join(self._bindir, "initdb")
        self._run(initdb, "-D", self._data, "-U", self.user, f"--pwfile={pwfile}", "--auth-host=scram-sha-256",
                  "--auth-local=trust", "-E", "UTF8", "--no-locale", "--no-sync")
        for attempt in range(3):
            self.port = free_port(both=False)
            options = (
                f"-c port={self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.directory}"
                " -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=60"
            )
            try:
                self._run(os.path.join(self._bindir, "pg_ctl"), "-D", self._data, "-l", os.path.join(self.directory, "log"),
                          "-o", options, "-w", "-t", "30", "start")
            except RuntimeError:
                if attempt == 2:
                    raise
                continue
            self._running = True
            return

    def stop(self) -> None:
        """
        pg_ctl stop (fast, bounded), then remove the directory.
        """
        if self._running:
            self._running = False
            try:
                self._run(os.path.join(self._bindir, "pg_ctl"), "-D", self._data, "-m", "fast", "-w", "-t", "20", "stop")
            except (RuntimeError, subprocess.TimeoutExpired):
                self._run(os.path.join(self._bindir, "pg_ctl"), "-D", self._data, "-m", "immediate", "-w", "-t", "10", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        """
        @return: The C{postgresql://} URI of C{database} (password
            percent-encoded: it holds C{/:@}).
        """
        return f"postgresql://{self.user}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres", **options: Any) -> Any:
        """
        @return: A blocking psycopg connection (autocommit) for the test's
            own checks, as another client would see the database.
        """
        import psycopg

        options.setdefault("autocommit", True)
        return psycopg.connect(self.url(database), connect_timeout=10, **options)

    def create_database(self) -> str:
        """
        @return: The name of a new, empty database.
        """
        self._counter += 1
        name = f"t{os.getpid()}_{self._counter}"
        with self.connect() as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        """
        Drop a database of L{create_database}, closing its connections.
        """
        with self.connect() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_shared: PostgresServer | None = None
_failed: str | None = None


def shared_server() -> PostgresServer:
    """
    @return: The process's server, started on first use.
    @raise SkipTest: Where PostgreSQL or psycopg is not installed.
    """
    global _shared, _failed
    if _shared is not None:
        return _shared
    if _failed is not None:
        raise RuntimeError(_failed)
    if importlib.util.find_spec("psycopg") is None:
        raise SkipTest("psycopg is not installed (pip install 'psycopg[binary]')")
    bindir = find_bindir()
    if bindir is None or not os.path.exists(os.path.join(bindir, "pg_ctl")):
        raise SkipTest("PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH): apt-get install postgresql")
    server = PostgresServer(bindir)
    try:
        server.start()
    except Exception as e:
        server.stop()
        _failed = f"PostgreSQL test server did not start: {e}"
        raise
    atexit.register(server.stop)
    _shared = server
    return server


class PostgresTestCase(TestCase):
    """
    A test with a database of its own on the shared server.

    @ivar server: The L{PostgresServer}.
    @ivar database: This test's database.
    """

    def setUp(self) -> None:
        self.server = shared_server()
        self.database = self.server.create_database()
        self.addCleanup(self.server.drop_database, self.database)

    def make_pool(self, connections: int = 4, **options: Any) -> ConnectionPool:
        """
        @return: A pool on this test's database (closed at cleanup,
            before the database is dropped).
        """
        pool = connect_pool(self.server.url(self.database), reactor, connections=connections, **options)
        self.addCleanup(pool.close)
        return pool

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """
        @return: The rows of C{sql}, read on a connection of its own
            (blocking: what another node sees, committed).
        """
        with self.server.connect(self.database) as connection:
            return connection.execute(sql, args).fetchall()


class MigratedTestCase(PostgresTestCase):
    """
    A test with a database of its own, migrated to this code's schema.

    @ivar runner: A pool on it.
    """

    @inlineCallbacks
    def setUp(self) -> Any:
        super().setUp()
        self.runner = self.make_pool()
        yield migrate(self.runner, now=0.0, node_id="test")


def wait_until(predicate: Any, timeout: float = 10.0, step: float = 0.02) -> Any:
    """
    @return: A L{Deferred} firing once C{predicate()} is true (checked
        every C{step} seconds on the reactor), failing after C{timeout}.
    """

    @inlineCallbacks
    def poll() -> Any:
        for _ in range(int(timeout / step) + 1):
            if predicate():
                return
            yield deferLater(reactor, step, lambda: None)
        raise AssertionError(f"not true within {timeout} s: {predicate}")

    return poll()
