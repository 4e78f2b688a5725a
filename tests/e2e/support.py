# twisted.trial's assertion methods are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""Fixtures shared by the end-to-end tests: one daemon per test class, clients, subprocesses.

trial (26.10) does not call ``setUpClass``/``tearDownClass`` (its suites run each test directly),
so a class's daemon is started lazily by the first test that asks for it and kept in a small
registry.  trial runs a class's tests one after another, also inside each ``--jobs`` worker (a
worker receives an ordered subsequence of the suite), so when a test of another class asks for its
daemon the previous one is stopped: at most one daemon per test process is alive, and an
``atexit`` hook stops the last.  If a class's tests were ever interleaved, the class would simply
get a fresh daemon; every test uses its own bucket, so nothing depends on the daemon's history.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

from botocore.exceptions import ClientError
from twisted.trial.unittest import SynchronousTestCase

from tests.e2e.daemon import Daemon, DaemonFailed

BIN = os.path.dirname(sys.executable)
MiB = 1024 * 1024

_running: dict[type, Daemon] = {}


def daemon_for(owner: type, *, tls: bool, config_toml: str | None = None) -> Daemon:
    """The running daemon of test class ``owner``, started on first use (see module docstring);
    ``config_toml`` is the text of a configuration file it is started with (``-c``)."""
    daemon = _running.get(owner)
    if daemon is not None:
        process = daemon.process
        if process is None or process.poll() is not None:
            raise DaemonFailed(f"the daemon of {owner.__name__} died:\n{daemon.tail()}")
        return daemon
    stop_all()
    workdir = tempfile.mkdtemp(prefix=f"{owner.__name__}-", dir=os.getcwd())
    extra: list[str] = []
    if config_toml is not None:
        config_path = os.path.join(workdir, "artifactd.toml")
        with open(config_path, "w", encoding="utf-8") as f:
            f.write(config_toml)
        extra = ["--config", config_path]
    daemon = Daemon(workdir, tls=tls, extra_args=extra).start()
    _running[owner] = daemon
    return daemon


def stop_all() -> None:
    """Stop every daemon this process started (a SIGKILL if one does not stop on SIGTERM)."""
    while _running:
        _, daemon = _running.popitem()
        try:
            daemon.stop()
        except DaemonFailed:
            daemon.kill()


atexit.register(stop_all)


class DaemonTestCase(SynchronousTestCase):
    """A test class served by one shared daemon; ``tls = True`` in a subclass serves HTTPS."""

    tls: ClassVar[bool] = False
    config_toml: ClassVar[str | None] = None  # a configuration file's text, if any

    @property
    def daemon(self) -> Daemon:
        return daemon_for(type(self), tls=self.tls, config_toml=self.config_toml)

    def bucket_name(self) -> str:
        """A fresh, valid bucket name derived from the test's name."""
        method = self.id().rsplit(".", 1)[-1].removeprefix("test_")
        stem = re.sub(r"[^a-z0-9]+", "-", method.lower()).strip("-")[:48] or "bucket"
        return f"{stem}-{os.urandom(3).hex()}"

    def setUp(self) -> None:
        seen = sum(1 for _ in self.daemon.events())
        self.addCleanup(self.assertNoDaemonErrors, seen)

    def assertNoDaemonErrors(self, skip: int = 0) -> None:
        """The daemon logged no error-level event (a traceback, an unhandled failure) after its
        first ``skip`` log lines: server-side failures a client may never see."""
        events = list(self.daemon.events())[skip:]
        bad = [e for e in events if e.get("level") in ("error", "critical") or e.get("unparsed")]
        self.assertEqual(bad, [])


def boto3_client(daemon: Daemon, access: str, secret: str, **config: Any) -> Any:
    """A boto3 client for ``daemon`` with the given (possibly wrong) credentials."""
    import boto3
    from botocore.config import Config

    options: dict[str, Any] = {
        "s3": {"addressing_style": "path"},
        "retries": {"max_attempts": 1, "mode": "standard"},
    }
    options.update(config)
    return boto3.client(
        "s3",
        endpoint_url=daemon.endpoint_url,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        verify=daemon.cert_path if daemon.tls else None,
        config=Config(**options),
    )


def random_file(path: str, size: int) -> str:
    """Write ``size`` random bytes to ``path``; returns their sha256 hex digest."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            chunk = os.urandom(min(remaining, MiB))
            digest.update(chunk)
            f.write(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree(root: str) -> dict[str, bytes]:
    """Relative path -> contents of every file below ``root``."""
    out: dict[str, bytes] = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def write_tree(root: str, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)


def run(
    argv: Sequence[str],
    env: dict[str, str],
    *,
    check: bool = True,
    timeout: float = 120.0,
    stdin: bytes | None = None,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a client command; on an unexpected exit status, fail with its output."""
    proc = subprocess.run(
        list(argv),
        env=env,
        input=stdin,
        capture_output=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )
    result = subprocess.CompletedProcess(
        proc.args,
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


@contextlib.contextmanager
def scratch(parent: str) -> Iterator[str]:
    """A temporary directory below ``parent`` (removed afterwards)."""
    with tempfile.TemporaryDirectory(dir=parent) as path:
        yield path


class Boto3TestCase(DaemonTestCase):
    """A DaemonTestCase with a boto3 client (``self.s3``) and the helpers boto3 tests share."""

    def setUp(self) -> None:
        super().setUp()
        self.s3 = self.daemon.client()

    def new_bucket(self) -> str:
        name = self.bucket_name()
        self.s3.create_bucket(Bucket=name)
        return name

    def assertS3Error(
        self, code: str, status: int, call: Callable[..., Any], **kwargs: Any
    ) -> ClientError:
        e: ClientError = self.assertRaises(ClientError, call, **kwargs)
        self.assertEqual(
            (e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]),
            (code, status),
        )
        return e

    def status(self, response: dict[str, Any]) -> int:
        return int(response["ResponseMetadata"]["HTTPStatusCode"])

    def headers(self, response: dict[str, Any]) -> dict[str, str]:
        return dict(response["ResponseMetadata"]["HTTPHeaders"])
