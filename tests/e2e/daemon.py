"""Run a real ``twistd -n artifactd`` in a subprocess for end-to-end tests, as users run it."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
_LISTENING = re.compile(r"listening on (?P<desc>\S+) \((?P<host>[^)]*):(?P<port>\d+)\)")


class DaemonFailed(Exception):
    pass


class Daemon:
    """One artifactd process on 127.0.0.1 with its own data directory.

    It listens on port 0 and the chosen port is read back from its JSON log, so there is no race
    for free ports.  ``tls=True`` serves HTTPS with a fresh self-signed certificate.
    """

    def __init__(
        self,
        workdir: str,
        *,
        tls: bool = False,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.data_dir = os.path.join(self.workdir, "data")
        self.log_path = os.path.join(self.workdir, "daemon.log")
        self.tls = tls
        self.extra_args = list(extra_args)
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.cert_path: str | None = None
        self._log_offset = 0
        if tls:
            self.cert_path, self.key_path = make_certificate(self.workdir)

    # ------------------------------------------------------------ lifecycle
    def listen_description(self) -> str:
        port = self.port  # reuse the port across restarts so clients keep working
        if self.tls:
            return (
                f"ssl:{port}:interface=127.0.0.1:privateKey={self.key_path}"
                f":certKey={self.cert_path}"
            )
        return f"tcp:{port}:interface=127.0.0.1"

    def command(self) -> list[str]:
        return [
            TWISTD,
            "-n",
            "--pidfile=",
            "--logger=artifactd.logs.json_observer",
            "artifactd",
            "--listen",
            self.listen_description(),
            "--data-dir",
            self.data_dir,
            *self.extra_args,
        ]

    def start(self, timeout: float = 30.0) -> Daemon:
        env = dict(os.environ)
        env.pop("ARTIFACTD_ROOT_ACCESS_KEY", None)
        env.pop("ARTIFACTD_ROOT_SECRET_KEY", None)
        env.update(self.env or {})
        log = open(self.log_path, "ab")  # noqa: SIM115
        self._log_offset = log.tell()
        self.process = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, env=env
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events(since_start=True):
                match = _LISTENING.search(event.get("msg", ""))
                if match:
                    self.port = int(match.group("port"))
                    return self
            if self.process.poll() is not None:
                raise DaemonFailed(
                    f"artifactd exited with {self.process.returncode}:\n{self.tail()}"
                )
            time.sleep(0.05)
        self.kill()
        raise DaemonFailed(f"artifactd did not start within {timeout}s:\n{self.tail()}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise DaemonFailed("artifactd did not stop on SIGTERM") from None
        finally:
            self.process = None

    def kill(self) -> None:
        """SIGKILL: the crash tests' power cut."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self) -> Daemon:
        self.stop()
        return self.start()

    # ------------------------------------------------------------- clients
    @property
    def endpoint_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def credentials(self) -> tuple[str, str]:
        with open(os.path.join(self.data_dir, "root-credentials"), encoding="utf-8") as f:
            data = json.load(f)
        return data["access_key"], data["secret_key"]

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client (path style, no retries unless asked) for this daemon."""
        import boto3
        from botocore.config import Config

        access, secret = self.credentials()
        options: dict[str, Any] = {
            "s3": {"addressing_style": "path"},
            "retries": {"max_attempts": 1, "mode": "standard"},
        }
        options.update(config)
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=access,
            aws_secret_access_key=secret,
            region_name="us-east-1",
            verify=self.cert_path if self.tls else None,
            config=Config(**options),
        )

    def client_env(self) -> dict[str, str]:
        """Environment for the AWS CLI pointing at this daemon."""
        access, secret = self.credentials()
        env = dict(os.environ)
        env.update(
            {
                "AWS_ACCESS_KEY_ID": access,
                "AWS_SECRET_ACCESS_KEY": secret,
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CONFIG_FILE": os.path.join(self.workdir, "aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": os.path.join(self.workdir, "aws-credentials"),
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        )
        if self.cert_path:
            env["AWS_CA_BUNDLE"] = self.cert_path
        return env

    # -------------------------------------------------------------- probes
    def events(self, since_start: bool = False) -> Iterator[dict[str, Any]]:
        """The daemon's JSON log events (of this run only if ``since_start``)."""
        try:
            with open(self.log_path, "rb") as f:
                if since_start:
                    f.seek(self._log_offset)
                for line in f:
                    try:
                        yield json.loads(line)
                    except ValueError:
                        yield {"msg": line.decode("utf-8", "replace"), "unparsed": True}
        except FileNotFoundError:
            return

    def tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-lines:]).decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def status(self, field: str) -> int:
        """A ``/proc/<pid>/status`` figure in KiB (e.g. VmHWM, VmRSS)."""
        assert self.process is not None
        with open(f"/proc/{self.process.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)


def make_certificate(directory: str) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and localhost; returns (cert path, key path)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "artifactd test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = os.path.join(directory, "cert.pem")
    key_path = os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


# ---------------------------------------------------------------- large-body helpers
# Shared by tests/e2e/test_memory.py and bench/upload_rss.py.

MiB = 1024 * 1024


def write_pattern_file(path: str, size: int) -> str:
    """Write ``size`` bytes to ``path`` fast: one random MiB repeated, each copy starting with its
    own 8-byte counter (so no two MiB are equal and nothing deduplicates).  Not fsynced.  Returns
    the content's sha256 hex digest."""
    block = bytearray(os.urandom(MiB))
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        written = 0
        counter = 0
        while written < size:
            block[:8] = counter.to_bytes(8, "big")
            piece = memoryview(block)[: min(MiB, size - written)]
            digest.update(piece)
            f.write(piece)
            written += len(piece)
            counter += 1
    return digest.hexdigest()


def staging_bytes(data_dir: str) -> int:
    """Bytes in the daemon's staging files: > 0 while a request body is being received."""
    total = 0
    try:
        with os.scandir(os.path.join(data_dir, "staging")) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):  # committed or discarded meanwhile
                    total += entry.stat().st_size
    except FileNotFoundError:
        pass
    return total


class LatencyProbe:
    """Calls ``probe`` (a small request) in a loop on its own thread until stopped, recording
    each call's latency, whether it succeeded and ``label()`` taken when it completed."""

    def __init__(
        self, probe: Callable[[], object], label: Callable[[], str], interval: float = 0.01
    ) -> None:
        self._probe = probe
        self._label = label
        self._interval = interval
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="latency-probe", daemon=True)
        self.samples: list[tuple[str, float]] = []  # (label, seconds), successful calls
        self.failures: list[str] = []

    def start(self) -> LatencyProbe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopping.is_set():
            started = time.perf_counter()
            try:
                self._probe()
            except Exception as e:
                self.failures.append(repr(e))
                self._stopping.wait(0.05)
                continue
            self.samples.append((self._label(), time.perf_counter() - started))
            self._stopping.wait(self._interval)

    def latencies(self, label: str | None = None) -> list[float]:
        return sorted(s for lab, s in self.samples if label is None or lab == label)


def presigned_probe(daemon: Daemon, bucket: str, key: str) -> Callable[[], None]:
    """A cheap probe of a small object: alternately HEAD and GET through presigned URLs on one
    keep-alive ``http.client`` connection.  It costs the calling process far less CPU than a boto3
    call, so its latency is the daemon's rather than this process's GIL."""
    import http.client
    from urllib.parse import urlsplit

    client = daemon.client(signature_version="s3v4")  # boto3 presigns SigV2 by default
    targets = []
    for method, operation in (("HEAD", "head_object"), ("GET", "get_object")):
        url = urlsplit(
            client.generate_presigned_url(
                operation, Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600
            )
        )
        targets.append((method, f"{url.path}?{url.query}", url.hostname, url.port))
    connection: list[http.client.HTTPConnection] = []
    calls = [0]

    def probe() -> None:
        method, target, host, port = targets[calls[0] % 2]
        calls[0] += 1
        if not connection:
            connection.append(http.client.HTTPConnection(host or "127.0.0.1", port, timeout=60))
        try:
            connection[0].request(method, target)
            response = connection[0].getresponse()
            response.read()
        except Exception:
            connection.pop().close()
            raise
        if response.status != 200:
            raise AssertionError(f"{method} {key}: {response.status} {response.reason}")

    return probe


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (0.0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered)) - 1))
    return ordered[rank]
