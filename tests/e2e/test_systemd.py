# twisted.trial's assertion methods are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""Socket activation: artifactd started by ``systemd-socket-activate`` (the same fd-passing
protocol as a ``.socket`` unit: ``LISTEN_FDS``, ``LISTEN_PID``, ``LISTEN_FDNAMES``) and served
through the socket it inherits, as ``systemd/artifactd.service`` runs it."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.e2e.daemon import Daemon, DaemonFailed

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")
FDNAME = "artifactd"
ACCESS_KEY = "AKSOCKETACTIVATION01"
SECRET_KEY = "socket-activation-secret-key"


def free_port(family: socket.AddressFamily, host: str) -> int:
    """A port nobody listens on right now (another process may take it before we bind it)."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class SocketActivatedDaemon(Daemon):
    """artifactd behind ``systemd-socket-activate``.

    The helper binds the address, then waits for the first connection before it execs twistd
    (same pid) with the socket as fd 3.  The root key pair is fixed (passed with ``-E``, since
    the helper hands its child only PATH, HOME, USER and TERM) so a client can sign its first
    request before the daemon, which would otherwise generate the pair, has started.
    """

    def __init__(self, workdir: str, *, address: str, domain: str) -> None:
        super().__init__(workdir)
        self.address = address  # "127.0.0.1:{port}" or "{port}" (= [::]:port, dual-stack)
        self.domain = domain
        self.bound_address = ""

    def listen_description(self) -> str:
        return f"systemd:domain={self.domain}:name={FDNAME}"

    def command(self) -> list[str]:
        assert SOCKET_ACTIVATE is not None
        return [
            SOCKET_ACTIVATE,
            "--listen",
            self.bound_address,
            f"--fdname={FDNAME}",
            "-E",
            f"ARTIFACTD_ROOT_ACCESS_KEY={ACCESS_KEY}",
            "-E",
            f"ARTIFACTD_ROOT_SECRET_KEY={SECRET_KEY}",
            *super().command(),
        ]

    def credentials(self) -> tuple[str, str]:
        return ACCESS_KEY, SECRET_KEY

    def bind(self, attempts: int = 5) -> SocketActivatedDaemon:
        """Start the helper on a free port (another one if that port was taken meanwhile) and
        return once it listens; twistd itself is not running yet."""
        family, host = (
            (socket.AF_INET, "127.0.0.1") if "." in self.address else (socket.AF_INET6, "::")
        )
        for _ in range(attempts):
            self.port = free_port(family, host)
            self.bound_address = self.address.format(port=self.port)
            log = open(self.log_path, "ab")  # noqa: SIM115
            self._log_offset = log.tell()
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )
            log.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if any("Listening on" in e.get("msg", "") for e in self.events(True)):
                    return self
                if self.process.poll() is not None:
                    break
                time.sleep(0.02)
            else:
                self.kill()
                raise DaemonFailed(f"systemd-socket-activate did not listen:\n{self.tail()}")
            self.process = None
            if "in use" not in self.tail():
                raise DaemonFailed(f"systemd-socket-activate failed:\n{self.tail()}")
        raise DaemonFailed(f"no free port after {attempts} attempts:\n{self.tail()}")

    def executable(self) -> str:
        """What the process runs now: systemd-socket-activate, then (same pid) python/twistd."""
        assert self.process is not None
        return os.path.basename(os.readlink(f"/proc/{self.process.pid}/exe"))

    def listening_event(self) -> dict[str, Any]:
        for event in self.events(since_start=True):
            if event.get("msg", "").startswith("listening on"):
                return event
        raise AssertionError(f"no 'listening on' event:\n{self.tail()}")

    def client_for(self, host: str) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=f"http://{host}:{self.port}",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
            ),
        )


class SocketActivationTests(SynchronousTestCase):
    if SOCKET_ACTIVATE is None:
        skip = (
            "systemd-socket-activate is not installed (Debian package 'systemd'; scripts/setup"
            " test installs it)"
        )

    def start(self, address: str, domain: str) -> SocketActivatedDaemon:
        workdir = tempfile.mkdtemp(prefix="socket-activation-", dir=os.getcwd())
        daemon = SocketActivatedDaemon(workdir, address=address, domain=domain).bind()
        self.addCleanup(daemon.kill)
        return daemon

    def roundtrip(self, client: Any, bucket: str) -> None:
        """Create a bucket, put an object and read it back whole."""
        client.create_bucket(Bucket=bucket)
        body = os.urandom(300_000)
        put = client.put_object(Bucket=bucket, Key="dir/artifact.bin", Body=body)
        digest = hashlib.sha256(body).hexdigest()
        self.assertEqual(put["ETag"], f'"{hashlib.md5(body).hexdigest()}"')
        got = client.get_object(Bucket=bucket, Key="dir/artifact.bin")
        self.assertEqual(got["Body"].read(), body)
        self.assertEqual(
            got["ResponseMetadata"]["HTTPHeaders"]["x-artifactd-digest"], f"sha256:{digest}"
        )

    def assertStopsCleanly(self, daemon: SocketActivatedDaemon) -> None:
        status = daemon.stop()
        # twistd re-raises SIGTERM after its orderly shutdown; systemd counts that as clean.
        self.assertIn(status, (0, -15))
        messages = [e.get("msg", "") for e in daemon.events()]
        self.assertIn("artifactd stopped", messages)
        bad = [e for e in daemon.events() if e.get("level") in ("error", "critical")]
        self.assertEqual(bad, [])

    def test_first_connection_starts_the_daemon(self) -> None:
        """The daemon starts on the first connection and serves it from the inherited socket."""
        daemon = self.start("127.0.0.1:{port}", "INET")
        self.assertEqual(daemon.executable(), "systemd-socket-activate")
        pid = daemon.process.pid if daemon.process else None
        # This request waits in the inherited socket's backlog while twistd starts.
        self.roundtrip(daemon.client_for("127.0.0.1"), "socket-activated")
        self.assertEqual(daemon.process.pid if daemon.process else None, pid)
        self.assertTrue(daemon.executable().startswith("python"), daemon.executable())
        event = daemon.listening_event()
        self.assertEqual(event["description"], f"systemd:domain=INET:name={FDNAME}")
        self.assertEqual((event["host"], event["port"]), ("127.0.0.1", daemon.port))
        self.assertStopsCleanly(daemon)

    def test_dual_stack_socket_as_in_the_unit(self) -> None:
        """The unit's form: ListenStream=<port> ([::], dual-stack) with domain=INET6 serves
        IPv4 and IPv6 clients."""
        daemon = self.start("{port}", "INET6")
        self.roundtrip(daemon.client_for("127.0.0.1"), "dual-stack-v4")
        event = daemon.listening_event()
        self.assertEqual((event["host"], event["port"]), ("::", daemon.port))
        if ipv6_loopback():
            self.roundtrip(daemon.client_for("[::1]"), "dual-stack-v6")
        self.assertStopsCleanly(daemon)
