"""The malloc and garbage-collector tuning the daemon applies at start-up."""

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


COLLECTOR_PROBE = """
import gc
from artifactd.memory import raise_young_threshold
raise_young_threshold()
runs = []
gc.callbacks.append(lambda phase, info: runs.append(info) if phase == "start" else None)
gc.collect()
runs.clear()
kept = [[] for _ in range(5000)]  # the objects of many requests in flight at once
burst = len(runs)
class Node:
    pass
for _ in range(30000):  # garbage only the collector frees
    node = Node()
    node.me = node
print(burst, len(runs) > 0, gc.get_threshold())
"""


class CollectorThresholdTests(SynchronousTestCase):
    def test_bursts_do_not_set_off_collections(self) -> None:
        """5000 objects alive at once set off no collection (Python's default threshold would
        run about seven); reference cycles are still collected; older generations keep their
        thresholds."""
        out = subprocess.run(
            [sys.executable, "-c", COLLECTOR_PROBE], capture_output=True, text=True, check=True
        ).stdout
        self.assertEqual(out.strip(), "0 True (10000, 10, 10)")
