"""What this machine allows a PUT at most, measured in the same run as the servers.

A PUT of a large body, as issue 4 asks for it, moves every byte through at least: a loopback
receive (kernel to user), MD5, SHA-256, and a write into the page cache synced to disk; the load
generator (curl) spends its own CPU on the same cores.  Each of these is measured here alone,
single-threaded on a hot 1 MiB buffer -- the cheapest each can be -- and their sum per GiB bounds
what any server doing all of them can reach on ``os.cpu_count()`` cores, even with every core
busy all the time and no overhead at all:

    ceiling MiB/s = cores * 1024 / (receive + MD5 + SHA-256 + write + the generator's CPU per GiB)

MD5 cannot be split across cores (each block depends on the last), so one core must also manage
the whole body's MD5: ``1024 / md5`` MiB/s is a second bound.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

MiB = 1024 * 1024
GiB = 1024 * MiB
PIECE = MiB


@dataclass
class Limits:
    """CPU seconds per GiB of each step, on one core, alone."""

    md5: float
    sha256: float
    receive: float  # loopback TCP, recv_into a 1 MiB buffer (the sender's CPU not counted)
    write: float  # into the page cache in 1 MiB writes, then fdatasync: the cheapest try
    write_mib_s: float  # that try by the wall clock
    write_tries: list[float]  # every try (s/GiB): fresh page-cache pages cost what the VM's
    # memory makes them cost at that moment, which can vary several-fold

    @property
    def server_floor(self) -> float:
        return self.md5 + self.sha256 + self.receive + self.write

    def ceiling(self, cores: int, generator_cpu_per_gib: float) -> float:
        """The most MiB/s a server doing all the steps can reach beside the generator."""
        return min(cores * 1024 / (self.server_floor + generator_cpu_per_gib), 1024 / self.md5)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "server_floor": self.server_floor}


def _per_gib(cpu_s: float, size: int) -> float:
    return cpu_s * GiB / size


def hash_cpu(name: str, size: int) -> float:
    block = memoryview(bytearray(os.urandom(PIECE)))
    digest = hashlib.new(name)
    started = time.thread_time()
    for _ in range(size // PIECE):
        digest.update(block)
    return _per_gib(time.thread_time() - started, size // PIECE * PIECE)


def receive_cpu(path: str) -> float:
    """Send ``path`` over loopback TCP (``sendfile``, from another thread) and receive it."""
    size = os.path.getsize(path)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def send() -> None:
            with socket.create_connection(("127.0.0.1", port)) as out, open(path, "rb") as f:
                out.sendfile(f)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        conn, _ = server.accept()
        with conn:
            buffer = memoryview(bytearray(PIECE))
            got = 0
            started = time.thread_time()
            while n := conn.recv_into(buffer):
                got += n
            cpu = time.thread_time() - started
        sender.join()
    if got != size:
        raise RuntimeError(f"loopback receive: got {got} of {size} bytes")
    return _per_gib(cpu, size)


def write_cpu(directory: str, size: int) -> tuple[float, float]:
    """Write ``size`` bytes (distinct MiB) to a new file and fdatasync it; CPU s/GiB and MiB/s."""
    block = bytearray(os.urandom(PIECE))
    view = memoryview(block)
    path = os.path.join(directory, "limits-write.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        started, cpu0 = time.perf_counter(), time.thread_time()
        for counter in range(size // PIECE):
            block[:8] = counter.to_bytes(8, "big")
            os.write(fd, view)
        os.fdatasync(fd)
        cpu, wall = time.thread_time() - cpu0, time.perf_counter() - started
    finally:
        os.close(fd)
        os.unlink(path)
    written = size // PIECE * PIECE
    return _per_gib(cpu, written), written / MiB / wall


def measure(directory: str, body_path: str, write_tries: int = 3) -> Limits:
    """Measure each step over as many bytes as the body at ``body_path`` has (at least 64 MiB);
    the write ``write_tries`` times, keeping the cheapest."""
    size = max(os.path.getsize(body_path), 64 * MiB)
    tries = []
    for _ in range(write_tries):
        os.sync()  # no earlier write-back in the write measurement
        tries.append(write_cpu(directory, size))
    write, write_mib_s = min(tries)
    return Limits(
        md5=hash_cpu("md5", size),
        sha256=hash_cpu("sha256", size),
        receive=receive_cpu(body_path),
        write=write,
        write_mib_s=write_mib_s,
        write_tries=[cpu for cpu, _ in tries],
    )
