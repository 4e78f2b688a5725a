"""What a server process costs, read from ``/proc``: CPU seconds, peak and sampled RSS.

``ProcessMeter`` wraps one measured run: it resets the processes' RSS high-water marks (writing
``5`` to ``/proc/<pid>/clear_refs``), notes their CPU time, samples ``VmRSS`` on a thread, and at
the end reports the deltas.  For several processes (nginx's master and workers) figures are
summed.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
KiB_PER_MiB = 1024


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        text = f.read()
    # the command name (field 2) is in parentheses and may contain spaces
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
    return (utime + stime) / CLOCK_TICKS


def status_kib(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` figure in KiB (VmHWM, VmRSS, ...)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def clear_refs(pid: int) -> None:
    """Reset ``pid``'s VmHWM to its current RSS."""
    with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as f:
        f.write("5")


def children(pid: int) -> list[int]:
    """The direct children of ``pid``."""
    found: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                found.extend(int(p) for p in f.read().split())
    return found


@dataclass
class Usage:
    """A server's cost over one measured run."""

    cpu_s: float  # CPU seconds used (all processes, all threads)
    hwm_mib: float  # peak RSS (VmHWM after a reset), summed over the processes
    rss_max_mib: float  # the largest sampled VmRSS sum
    wall_s: float

    @property
    def cpu_pct(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


class ProcessMeter:
    """Measures the processes named by ``pids()`` between ``start()`` and ``stop()``."""

    def __init__(self, pids: Callable[[], list[int]], interval: float = 0.05) -> None:
        self._pids_of = pids
        self._interval = interval
        self._pids: list[int] = []
        self._cpu0 = 0.0
        self._t0 = 0.0
        self._rss_max_kib = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def _cpu(self) -> float:
        total = 0.0
        for pid in self._pids:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                total += cpu_seconds(pid)
        return total

    def _sum(self, field: str) -> int:
        total = 0
        for pid in self._pids:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError, KeyError):
                total += status_kib(pid, field)
        return total

    def start(self) -> ProcessMeter:
        self._pids = self._pids_of()
        for pid in self._pids:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                clear_refs(pid)
        self._rss_max_kib = self._sum("VmRSS")
        self._cpu0 = self._cpu()
        self._t0 = time.perf_counter()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stopping.wait(self._interval):
            self._rss_max_kib = max(self._rss_max_kib, self._sum("VmRSS"))

    def stop(self) -> Usage:
        wall = time.perf_counter() - self._t0
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        cpu = self._cpu() - self._cpu0
        rss = max(self._rss_max_kib, self._sum("VmRSS"))
        hwm = max(self._sum("VmHWM"), rss)
        return Usage(
            cpu_s=cpu,
            hwm_mib=hwm / KiB_PER_MiB,
            rss_max_mib=rss / KiB_PER_MiB,
            wall_s=wall,
        )
