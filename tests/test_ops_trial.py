# -*- test-case-name: tests.test_ops_trial -*-
"""
C{trial tests} from the repository root (issue 14 item 7).

Twisted's C{trial} console script puts its own directory first on
C{sys.path}, not the current one, so the top-level C{tests} package is
importable only when the checkout is on the path: the development install
(C{pip install -e '.[test]' --config-settings editable_mode=compat},
README) writes a C{.pth} naming the checkout. This test makes that install
of a copy of this checkout in a throwaway virtualenv (its dependencies
borrowed from the running environment through a C{.pth}, not
downloaded) and runs the C{trial} script there on one small module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

ROOT = Path(__file__).parent.parent
#: The module run: small, and importing the shared test helpers
#: (C{tests.fakes}) as most modules do.
MODULE = "tests.test_call_limits"


class TrialScriptTests(SynchronousTestCase):
    """
    The C{trial} console script on the development install.
    """

    def test_trial_tests_from_root(self) -> None:
        """
        Without the install, C{trial tests.test_call_limits} from the checkout's
        root fails (trial finds no such module); after the README's
        development install it runs and passes.
        """
        trial = Path(sys.executable).parent / "trial"
        if not trial.exists():
            found = shutil.which("trial")
            if found is None:
                raise SkipTest("no trial console script next to this Python or on PATH")
            trial = Path(found)
        work = Path(tempfile.mkdtemp(prefix="aiconnect-trial-"))
        checkout = work / "checkout"
        shutil.copytree(
            ROOT,
            checkout,
            ignore=shutil.ignore_patterns(
                ".git", ".venv", "__pycache__", "*.egg-info", "_trial_temp*", "build", "dist", "var", "dropin.cache"
            ),
        )
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
        python = venv / "bin" / "python"
        purelib = Path(
            subprocess.run(
                [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                capture_output=True, text=True, check=True, timeout=60,
            ).stdout.strip()
        )
        # The dependencies: those of the running environment.
        (purelib / "aiconnect-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

        # As a user runs it: no PYTHONPATH (a test run may set one).
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

        def run_trial() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(python), str(trial), MODULE], cwd=str(checkout), env=env, capture_output=True, text=True,
                timeout=300,
            )

        before = run_trial()
        self.assertNotEqual(before.returncode, 0, before.stdout)
        self.assertIn("ObjectNotFound: 'tests.test_call_limits' does not name an object", before.stdout)

        install = subprocess.run(
            [
                # Bounded: no index reachable must not stall the suite.
                sys.executable, "-m", "pip", "--python", str(python), "--retries", "1", "--timeout", "20",
                "--disable-pip-version-check", "install", "--quiet", "--no-deps",
                "-e", str(checkout), "--config-settings", "editable_mode=compat",
            ],
            env=env, capture_output=True, text=True, timeout=600,
        )
        if install.returncode != 0 and any(
            text in install.stderr
            for text in ("No matching distribution", "Could not find a version", "NewConnectionError", "timed out")
        ):
            raise SkipTest("no package index offers the build requirements (setuptools, wheel): " + install.stderr[-300:])
        self.assertEqual(install.returncode, 0, install.stdout + install.stderr)

        after = run_trial()
        self.assertEqual(after.returncode, 0, after.stdout + after.stderr)
        self.assertIn("PASSED", after.stdout)
