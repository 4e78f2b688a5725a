"""The malloc tuning the daemon applies at start-up."""

from __future__ import annotations

import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

PROBE = """
from artifactd.memory import fix_mmap_threshold
print(fix_mmap_threshold(1 << 20))
"""


class MmapThresholdTests(SynchronousTestCase):
    def test_glibc_accepts_it(self) -> None:
        """On glibc (the platform artifactd is deployed on) mallopt takes the threshold."""
        out = subprocess.run(
            [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
        ).stdout
        self.assertEqual(out.strip(), "True")
