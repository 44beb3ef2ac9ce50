# -*- test-case-name: tests.test_ops_gitignore -*-
"""
C{.gitignore} keeps a server's runtime files out of git (issue 14 item 9),
asked of git itself (C{git check-ignore}); skipped where git or the
checkout's C{.git} is missing (an installed copy).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

ROOT = Path(__file__).parent.parent

#: What running the server and the tests from the checkout leaves behind.
RUNTIME = (
    "twistd.log",
    "twistd.log.1",
    "twistd.pid",
    "var/aiconnect.sqlite3",
    "var/recordings/customer.example.com/2026-01-01/1.wav",
    "etc/tls/server.crt",
    "etc/tls/server.key",
    "events.sqlite3-wal",
    "_trial_temp/test.log",
    "_trial_temp.lock",
    "aiconnect.egg-info/PKG-INFO",
    "twisted/plugins/dropin.cache",
)
#: What must stay tracked.
SOURCES = ("etc/aiconnect.toml", "etc/systemd/aiconnect.service", "Dockerfile", "CHANGELOG.rst", "aiconnect/tap.py")


class GitIgnoreTests(SynchronousTestCase):
    """
    C{git check-ignore} on runtime files and sources.
    """

    def check_ignore(self, names: tuple[str, ...]) -> set[str]:
        git = shutil.which("git")
        if git is None:
            raise SkipTest("git is not installed")
        if not (ROOT / ".git").exists():
            raise SkipTest("not a git checkout")
        result = subprocess.run(
            [git, "check-ignore", "--no-index", *names], cwd=str(ROOT), capture_output=True, text=True, timeout=60
        )
        if result.returncode not in (0, 1):
            raise SkipTest(f"git check-ignore failed: {result.stderr.strip()}")
        return set(result.stdout.split())

    def test_runtime_files_ignored(self) -> None:
        """
        Logs, pid file, database, recordings, the self-signed certificate,
        trial's and setuptools' leftovers are ignored.
        """
        self.assertEqual(set(RUNTIME) - self.check_ignore(RUNTIME), set())

    def test_sources_not_ignored(self) -> None:
        """
        The shipped configuration, the service files and the code are not.
        """
        self.assertEqual(self.check_ignore(SOURCES), set())
