"""Large-body benchmark: a 2 GiB single PUT and GET against a real ``twistd -n artifactd``.

Prints upload and download rates (boto3 and curl), the daemon's VmHWM before and after, and the
latency of small HEAD/GET probes while the daemon receives the body; and, from the same run and
the same file, the baselines they should be read against: a local write+fsync of the file (what
the disk allows) and MD5+SHA-256 of it in one thread (the daemon hashes every byte with both).

Run on demand, never by the tests:  .venv/bin/python -m bench.upload_rss [--size-mib 2048]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

from tests.e2e.daemon import (
    Daemon,
    LatencyProbe,
    MiB,
    percentile,
    presigned_probe,
    staging_bytes,
    write_pattern_file,
)

BUCKET = "bench"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def chunks(read: Callable[[int], bytes]) -> Iterator[bytes]:
    while chunk := read(MiB):
        yield chunk


def write_and_fsync(source: str, target: str) -> None:
    """The disk baseline: copy ``source`` (in the page cache) to ``target`` and fsync it."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        for chunk in chunks(src.read):
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())


def hash_file(path: str) -> None:
    """The CPU baseline: MD5 and SHA-256 of every byte in one thread, as the daemon does."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in chunks(f.read):
            md5.update(chunk)
            sha.update(chunk)


def latency_line(probe: LatencyProbe, label: str) -> str:
    values = probe.latencies(label)
    if not values:
        return "no probes"
    return (
        f"{len(values)} probes, p50 {percentile(values, 0.5) * 1000:.1f} ms,"
        f" p99 {percentile(values, 0.99) * 1000:.1f} ms, max {values[-1] * 1000:.1f} ms"
    )


def curl(daemon: Daemon, *args: str) -> list[str]:
    access, secret = daemon.credentials()
    return [
        "curl",
        "--silent",
        "--show-error",
        "--fail",
        "--aws-sigv4",
        "aws:amz:us-east-1:s3",
        "--user",
        f"{access}:{secret}",
        *args,
    ]


def run(size: int, parent: str, keep: bool) -> None:
    workdir = tempfile.mkdtemp(prefix="upload-rss-", dir=parent)
    daemon = Daemon(os.path.join(workdir, "daemon"))
    try:
        measure(daemon, workdir, size)
    finally:
        daemon.kill()
        if keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def measure(daemon: Daemon, workdir: str, size: int) -> None:
    mib = size / MiB
    path = os.path.join(workdir, "body.bin")
    print(f"artifactd large-body benchmark: {mib:.0f} MiB in {workdir}")
    digest = write_pattern_file(path, size)

    baseline_path = os.path.join(workdir, "baseline.bin")
    disk_s = timed(lambda: write_and_fsync(path, baseline_path))
    os.unlink(baseline_path)
    hash_s = timed(lambda: hash_file(path))
    disk, hashing = mib / disk_s, mib / hash_s
    print(f"baseline  local write+fsync:        {disk:8.0f} MiB/s")
    print(f"baseline  MD5+SHA-256, one thread:  {hashing:8.0f} MiB/s")

    daemon.start()
    client = daemon.client(read_timeout=600)
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="small", Body=b"s" * 1024)
    hwm_idle = daemon.status("VmHWM")

    def phase() -> str:
        return "receiving" if staging_bytes(daemon.data_dir) else "other"

    probe = LatencyProbe(presigned_probe(daemon, BUCKET, "small"), phase).start()

    def boto3_put() -> None:
        with open(path, "rb") as body:
            client.put_object(Bucket=BUCKET, Key="boto3.bin", Body=body)

    try:
        put_s = timed(boto3_put)
    finally:
        probe.stop()
    hwm_put = daemon.status("VmHWM")

    def boto3_get() -> None:
        body = client.get_object(Bucket=BUCKET, Key="boto3.bin")["Body"]
        sha = hashlib.sha256()
        for chunk in body.iter_chunks(MiB):
            sha.update(chunk)
        if sha.hexdigest() != digest:
            raise SystemExit("boto3 GET returned different bytes")

    get_s = timed(boto3_get)

    # curl: no client-side hashing in the way; x-amz-content-sha256 is required (curl 7.88's
    # --aws-sigv4 does not send one) and is verified by the daemon.
    url = f"{daemon.endpoint_url}/{BUCKET}/curl.bin"
    client.delete_object(Bucket=BUCKET, Key="boto3.bin")  # so curl's body is a new blob
    curl_probe = LatencyProbe(presigned_probe(daemon, BUCKET, "small"), phase).start()
    try:
        curl_put_s = timed(
            lambda: subprocess.run(
                curl(
                    daemon,
                    "-H",
                    f"x-amz-content-sha256: {digest}",
                    "-T",
                    path,
                    "-o",
                    "/dev/null",
                    url,
                ),
                check=True,
            )
        )
    finally:
        curl_probe.stop()
    curl_get_s = timed(
        lambda: subprocess.run(
            curl(daemon, "-H", f"x-amz-content-sha256: {EMPTY_SHA256}", "-o", "/dev/null", url),
            check=True,
        )
    )
    hwm_end = daemon.status("VmHWM")

    rows = [
        ("boto3 PUT (client hashes the file first)", mib / put_s),
        ("curl  PUT", mib / curl_put_s),
        ("boto3 GET (+ SHA-256 in the client; cached)", mib / get_s),
        ("curl  GET to /dev/null (page cache)", mib / curl_get_s),
    ]
    for name, rate in rows:
        print(f"{name:44s} {rate:6.0f} MiB/s {rate / disk:5.2f}x disk {rate / hashing:5.2f}x hash")
    print(
        f"VmHWM: idle {hwm_idle / 1024:.1f} MiB, after boto3 PUT {hwm_put / 1024:.1f} MiB,"
        f" at the end {hwm_end / 1024:.1f} MiB"
    )
    print(f"probes while receiving (boto3 PUT): {latency_line(probe, 'receiving')}")
    print(f"probes while receiving (curl PUT):  {latency_line(curl_probe, 'receiving')}")
    print(f"probes before the body (boto3 hashing): {latency_line(probe, 'other')}")
    failures = probe.failures + curl_probe.failures
    if failures:
        print(f"probe failures: {len(failures)}, first: {failures[0]}")
    daemon.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=2048, help="body size (default 2048)")
    parser.add_argument(
        "--dir", default=os.getcwd(), help="where to put the file and the data dir (default .)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the files afterwards")
    options = parser.parse_args(argv)
    if shutil.which("curl") is None:
        sys.exit("curl is required")
    run(options.size_mib * MiB, options.dir, options.keep)


if __name__ == "__main__":
    main()
