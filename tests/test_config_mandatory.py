"""
C{[limits] mandatory_wait} (SPEC s13): how long the SRC's 200 OK may wait
for the mandatory forwards of a newCall answer (L{aiconnect.config}).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from aiconnect.config import LimitsConfig, load_string
from aiconnect.errors import ConfigError


class MandatoryWaitTests(SynchronousTestCase):
    """
    Reading C{[limits] mandatory_wait}.
    """

    def test_default(self) -> None:
        """
        Absent, it is 32 s (64 x T1, the SRC's own INVITE timeout over UDP).
        """
        self.assertEqual(load_string("").limits.mandatory_wait, 32.0)
        self.assertEqual(LimitsConfig().mandatory_wait, 32.0)

    def test_read(self) -> None:
        """
        An integer or a float is read as seconds.
        """
        self.assertEqual(load_string("[limits]\nmandatory_wait = 5\n").limits.mandatory_wait, 5.0)
        self.assertEqual(load_string("[limits]\nmandatory_wait = 0.5\n").limits.mandatory_wait, 0.5)

    def test_bad_values_name_the_key(self) -> None:
        """
        Zero, a negative number, a string, a boolean or infinity is refused
        naming C{limits.mandatory_wait} and what is wrong with the value (a
        known key).
        """
        for value in ("0", "-1", '"32"', "true", "inf"):
            with self.subTest(value=value):
                error = self.assertRaises(ConfigError, load_string, "[limits]\nmandatory_wait = %s\n" % value)
                self.assertEqual(error.key, "limits.mandatory_wait")
                self.assertNotIn("unknown key", str(error))
