"""The three servers under test, each on a free 127.0.0.1 port with its data in a temp dir:
artifactd (``twistd -n artifactd`` through tests/e2e/daemon.py's ``Daemon``), nginx (files plus
WebDAV PUT/DELETE, autoindex for listings) and ``moto_server``."""

from __future__ import annotations

import contextlib
import getpass
import grp
import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import IO

from bench.procstat import children
from bench.signing import Signer
from tests.e2e.daemon import Daemon

HOST = "127.0.0.1"


class ServerFailed(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerFailed(f"exited with {process.returncode}:\n{tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return
        time.sleep(0.05)
    raise ServerFailed(f"not listening on {port} after {timeout}s:\n{tail(log)}")


def tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            return b"".join(f.readlines()[-lines:]).decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def terminate(process: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def http_request(
    port: int,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 600,
) -> tuple[int, bytes]:
    """One request on a fresh connection; returns (status, body)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class Server:
    """One server under test.  ``signed`` servers get presigned targets and curl's SigV4."""

    name = "server"
    signed = True

    def __init__(self, workdir: str, port: int, signer: Signer) -> None:
        self.workdir = os.path.join(workdir, self.name)
        os.makedirs(self.workdir, exist_ok=True)
        self.port = port
        self.signer = signer

    @property
    def host(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def pids(self) -> list[int]:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget every bucket and object (the server keeps running or is restarted)."""
        raise NotImplementedError

    def version(self) -> str:
        return ""

    # ------------------------------------------------------------ requests
    def target(self, operation: str, bucket: str, key: str | None = None, **params: object) -> str:
        """The request target for an S3 operation: presigned for signed servers."""
        if key is not None:
            params["Key"] = key
        return self.signer.target(operation, Bucket=bucket, **params)

    def object_path(self, bucket: str, key: str) -> str:
        return f"/{bucket}/{key}"

    def curl_auth(self) -> list[str]:
        return self.signer.curl_args() if self.signed else []

    def request(
        self, method: str, target: str, body: bytes | None = None, ok: tuple[int, ...] = (200,)
    ) -> bytes:
        status, data = http_request(self.port, method, target, body)
        if status not in ok:
            raise ServerFailed(
                f"{self.name}: {method} {target[:80]} answered {status}: {data[:300]!r}"
            )
        return data

    def create_bucket(self, bucket: str) -> None:
        self.request("PUT", self.target("create_bucket", bucket))

    def put_object(self, bucket: str, key: str, body: bytes) -> None:
        self.request("PUT", self.target("put_object", bucket, key), body, ok=(200, 201, 204))

    def delete_object(self, bucket: str, key: str) -> None:
        self.request("DELETE", self.target("delete_object", bucket, key), ok=(200, 204))


class ArtifactdServer(Server):
    name = "artifactd"

    def __init__(self, workdir: str, port: int, signer: Signer) -> None:
        super().__init__(workdir, port, signer)
        self.daemon = Daemon(
            self.workdir,
            env={
                "ARTIFACTD_ROOT_ACCESS_KEY": signer.access_key,
                "ARTIFACTD_ROOT_SECRET_KEY": signer.secret_key,
            },
        )
        self.daemon.port = port  # fixed, so the targets presigned for it stay valid
        self.last_start_s = 0.0

    @property
    def data_dir(self) -> str:
        return self.daemon.data_dir

    def start(self) -> None:
        started = time.perf_counter()
        self.daemon.start(timeout=900)  # start-up recovery reads every object record
        self.last_start_s = time.perf_counter() - started

    def stop(self) -> None:
        try:
            self.daemon.stop()
        finally:
            self.daemon.kill()

    def pids(self) -> list[int]:
        process = self.daemon.process
        return [process.pid] if process is not None else []

    def reset(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.start()

    @contextlib.contextmanager
    def stopped(self) -> Iterator[str]:
        """The daemon stopped for the duration; yields its data directory."""
        self.stop()
        try:
            yield self.data_dir
        finally:
            self.start()

    def version(self) -> str:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()


class NginxServer(Server):
    """nginx serving a directory: GET from files, PUT/DELETE through its WebDAV module, LIST as
    an autoindex page.  Requests carry plain paths (nginx checks no signatures)."""

    name = "nginx"
    signed = False

    def __init__(self, workdir: str, port: int, signer: Signer) -> None:
        super().__init__(workdir, port, signer)
        self.root = os.path.join(self.workdir, "root")
        self.conf = os.path.join(self.workdir, "nginx.conf")
        self.error_log = os.path.join(self.workdir, "error.log")
        self.process: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    def config(self) -> str:
        d = self.workdir
        user = ""
        if os.geteuid() == 0:  # else workers would run as nobody, who cannot write the root
            user = f"user {getpass.getuser()} {grp.getgrgid(os.getegid()).gr_name};"
        return f"""{user}
daemon off;
master_process on;
worker_processes auto;
pid {d}/nginx.pid;
error_log {self.error_log} warn;
events {{ worker_connections 4096; }}
http {{
    access_log {d}/access.log combined buffer=64k;
    client_body_temp_path {d}/client_body_temp;
    proxy_temp_path {d}/proxy_temp;
    fastcgi_temp_path {d}/fastcgi_temp;
    uwsgi_temp_path {d}/uwsgi_temp;
    scgi_temp_path {d}/scgi_temp;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 300s;
    keepalive_requests 10000000;
    server {{
        listen {self.host};
        root {self.root};
        location / {{
            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw;
            client_max_body_size 0;
            autoindex on;
        }}
    }}
}}
"""

    def start(self) -> None:
        os.makedirs(self.root, exist_ok=True)
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write(self.config())
        with open(os.path.join(self.workdir, "stdout.log"), "ab") as log:
            self.process = subprocess.Popen(
                ["nginx", "-p", self.workdir, "-c", self.conf, "-e", self.error_log],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, self.process, self.error_log, 30)

    def stop(self) -> None:
        terminate(self.process)
        self.process = None

    def pids(self) -> list[int]:
        if self.process is None:
            return []
        return [self.process.pid, *children(self.process.pid)]

    def reset(self) -> None:
        # renamed first: a PUT still finishing from the last run may create files meanwhile
        if os.path.exists(self.root):
            old = tempfile.mkdtemp(prefix="old-root-", dir=self.workdir)
            os.rename(self.root, os.path.join(old, "root"))
            shutil.rmtree(old, ignore_errors=True)
        os.makedirs(self.root, exist_ok=True)

    def version(self) -> str:
        return subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()

    def target(self, operation: str, bucket: str, key: str | None = None, **params: object) -> str:
        return f"/{bucket}/{key}" if key is not None else f"/{bucket}/"

    def create_bucket(self, bucket: str) -> None:
        os.makedirs(os.path.join(self.root, bucket), exist_ok=True)


class MotoServer(Server):
    """``moto_server`` from its own venv (.venv-bench); it keeps everything in memory."""

    name = "moto"

    def __init__(self, workdir: str, port: int, signer: Signer, moto_server: str) -> None:
        super().__init__(workdir, port, signer)
        self.executable = moto_server
        self.log = os.path.join(self.workdir, "moto.log")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [self.executable, "-H", HOST, "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, self.process, self.log, 60)

    def stop(self) -> None:
        terminate(self.process)
        self.process = None

    def pids(self) -> list[int]:
        return [self.process.pid] if self.process is not None else []

    def reset(self) -> None:
        self.request("POST", "/moto-api/reset")

    def version(self) -> str:
        python = os.path.join(os.path.dirname(self.executable), "python")
        return subprocess.run(
            [python, "-c", "import moto; print(moto.__version__)"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
