"""The load generators, both C: curl for large bodies, wrk (with bench/wrk.lua) for small
requests, ranges and listings; and for the 1 GiB rows two cross-check clients that cost less than
curl (bench/rawget.py, bench/rawput.py: the bytes are moved by the kernel).  Each run reports
the generator's own CPU seconds (from ``os.wait4``), so a table can show whether the client was
the bottleneck."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
WRK_SCRIPT = os.path.join(HERE, "wrk.lua")
RAWGET = os.path.join(HERE, "rawget.py")
RAWPUT = os.path.join(HERE, "rawput.py")


@dataclass
class Finished:
    """One generator process: exit status, output, wall time and CPU seconds."""

    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float


def run_processes(commands: list[list[str]], timeout: float = 3600) -> list[Finished]:
    """Start all ``commands`` at once and reap each with ``os.wait4`` (for its rusage)."""
    with contextlib.ExitStack() as stack:
        temp = tempfile.TemporaryFile
        outputs = [(stack.enter_context(temp()), stack.enter_context(temp())) for _ in commands]
        started = time.perf_counter()
        processes: list[subprocess.Popen[bytes]] = []
        try:
            for command, (out, err) in zip(commands, outputs, strict=True):
                processes.append(subprocess.Popen(command, stdout=out, stderr=err))
            finished = _reap(processes, started, timeout)
        finally:
            for process in processes:
                if process.returncode is None and process.poll() is None:
                    process.kill()
                    process.wait()
        results = []
        for command, process, (out, err) in zip(commands, processes, outputs, strict=True):
            code, wall, cpu = finished[process.pid]
            out.seek(0)
            err.seek(0)
            results.append(
                Finished(
                    command,
                    code,
                    out.read().decode("utf-8", "replace"),
                    err.read().decode("utf-8", "replace"),
                    wall,
                    cpu,
                )
            )
        return results


def _reap(
    processes: list[subprocess.Popen[bytes]], started: float, timeout: float
) -> dict[int, tuple[int, float, float]]:
    """Wait for each of ``processes`` (exit code, wall seconds since ``started``, CPU seconds)."""
    finished: dict[int, tuple[int, float, float]] = {}
    deadline = time.monotonic() + timeout
    while len(finished) < len(processes):
        if time.monotonic() > deadline:
            raise TimeoutError(f"load generator still running after {timeout}s")
        for process in processes:
            if process.pid in finished:
                continue
            # this pid only (never another child, e.g. a server), without blocking
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid == process.pid:
                code = os.waitstatus_to_exitcode(status)
                process.returncode = code  # reaped here; Popen must not wait again
                finished[pid] = (
                    code,
                    time.perf_counter() - started,
                    usage.ru_utime + usage.ru_stime,
                )
        if len(finished) < len(processes):
            time.sleep(0.005)
    return finished


# ------------------------------------------------------------------ curl
CURL_FORMAT = "%{http_code} %{time_total} %{size_upload} %{size_download}"


@dataclass
class CurlResult:
    status: int
    seconds: float  # curl's time_total: connect to last byte
    uploaded: int
    downloaded: int
    wall_s: float
    cpu_s: float
    error: str = ""

    @property
    def cpu_pct(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


def curl_command(url: str, auth: list[str], *, upload: str | None = None) -> list[str]:
    command = ["curl", "--silent", "--show-error", "--http1.1", *auth, "-H", "Expect:"]
    if upload is not None:
        command += ["-T", upload]
    return [*command, "-o", "/dev/null", "-w", CURL_FORMAT, url]


def parse_curl(done: Finished) -> CurlResult:
    fields = done.stdout.split()
    if done.returncode != 0 or len(fields) != 4:
        return CurlResult(
            0, 0.0, 0, 0, done.wall_s, done.cpu_s, f"curl exit {done.returncode}: {done.stderr}"
        )
    status = int(fields[0])
    return CurlResult(
        status,
        float(fields[1]),
        int(float(fields[2])),
        int(float(fields[3])),
        done.wall_s,
        done.cpu_s,
        "" if 200 <= status < 300 else f"HTTP {status}",
    )


def curl(url: str, auth: list[str], *, upload: str | None = None) -> CurlResult:
    return parse_curl(run_processes([curl_command(url, auth, upload=upload)])[0])


def raw_get(port: int, host: str, target: str) -> CurlResult:
    """The same GET through bench/rawget.py (4 MiB ``recv_into``, body discarded)."""
    return _raw_client(RAWGET, [str(port), host, target], upload=False)


def raw_put(port: int, host: str, target: str, path: str) -> CurlResult:
    """The same PUT through bench/rawput.py (the body by ``sendfile``, nothing copied in the
    client)."""
    return _raw_client(RAWPUT, [str(port), host, target, path], upload=True)


def _raw_client(script: str, args: list[str], *, upload: bool) -> CurlResult:
    """Run one of the cross-check clients, which print "STATUS SECONDS BODY_BYTES"."""
    done = run_processes([[sys.executable, script, *args]])[0]
    fields = done.stdout.split()
    if done.returncode != 0 or len(fields) != 3:
        name = os.path.splitext(os.path.basename(script))[0]
        error = f"{name} exit {done.returncode}: {done.stderr.strip()[-300:]}"
        return CurlResult(0, 0.0, 0, 0, done.wall_s, done.cpu_s, error)
    status, body = int(fields[0]), int(fields[2])
    return CurlResult(
        status,
        float(fields[1]),
        body if upload else 0,
        0 if upload else body,
        done.wall_s,
        done.cpu_s,
        "" if 200 <= status < 300 else f"HTTP {status}",
    )


# ------------------------------------------------------------------- wrk
@dataclass
class WrkResult:
    requests: int
    duration_s: float
    bytes: int
    errors: dict[str, int]  # connect, read, write, status (non-2xx/3xx), timeout
    latency_ms: dict[str, float]  # mean, p50, p99, max
    wall_s: float
    cpu_s: float
    threads: int
    connections: int
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def cpu_pct(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    def error_text(self) -> str:
        bad = {k: v for k, v in self.errors.items() if v}
        return ", ".join(f"{k} {v}" for k, v in bad.items())


def wrk(
    port: int,
    host: str,
    mode: str,
    targets_file: str,
    *,
    connections: int,
    seconds: float,
    extra: tuple[int, ...] = (),
) -> WrkResult:
    """Run wrk against ``127.0.0.1:port`` with ``connections`` connections for ``seconds``."""
    threads = max(1, min(2, connections))
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "60s",
        "-s",
        WRK_SCRIPT,
        f"http://127.0.0.1:{port}/",
        "--",
        mode,
        targets_file,
        host,
        str(threads),
        *(str(x) for x in extra),
    ]
    done = run_processes([command], timeout=seconds + 300)[0]
    line = next((x for x in done.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr}\n{done.stdout}")
    data = json.loads(line[len("WRKJSON ") :])
    return WrkResult(
        requests=data["requests"],
        duration_s=data["duration_us"] / 1e6,
        bytes=data["bytes"],
        errors={k: data[k] for k in ("connect", "read", "write", "status", "timeout")},
        latency_ms={
            "mean": data["latency_mean_us"] / 1000,
            "p50": data["latency_p50_us"] / 1000,
            "p99": data["latency_p99_us"] / 1000,
            "max": data["latency_max_us"] / 1000,
        },
        wall_s=done.wall_s,
        cpu_s=done.cpu_s,
        threads=threads,
        connections=connections,
        raw=data,
    )


def write_targets(path: str, targets: list[str]) -> str:
    with open(path, "w", encoding="ascii") as f:
        f.writelines(t + "\n" for t in targets)
    return path
