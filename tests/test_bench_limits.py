"""The benchmark's PUT ceiling (bench/limits.py): its arithmetic, its report lines, and that each
step really moves the bytes it is given; and the sendfile sender (bench/rawput.py) that
cross-checks curl's PUT."""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
import threading

from twisted.trial.unittest import SynchronousTestCase

from bench import limits, loadgen, rawput, report
from bench.procstat import Usage
from bench.results import Config, Results, Sample

GiB = limits.GiB
MiB = limits.MiB


def _limits(
    md5: float = 1.5, sha256: float = 0.5, receive: float = 0.25, write: float = 0.25
) -> limits.Limits:
    return limits.Limits(md5, sha256, receive, write, 1000.0, [write, 2 * write])


class CeilingTests(SynchronousTestCase):
    def test_floor_is_the_sum_of_the_steps(self) -> None:
        self.assertEqual(_limits().server_floor, 2.5)

    def test_ceiling_shares_the_cores_with_the_generator(self) -> None:
        # 2 cores, 2.5 + 0.5 CPU s per GiB: 2/3 GiB/s
        self.assertAlmostEqual(_limits().ceiling(2, 0.5), 2 * 1024 / 3.0)

    def test_md5_on_one_core_bounds_the_ceiling(self) -> None:
        lim = _limits(md5=2.0, sha256=0.0, receive=0.0, write=0.0)
        self.assertEqual(lim.ceiling(8, 0.0), 512.0)

    def test_json_has_the_floor(self) -> None:
        self.assertEqual(_limits().as_json()["server_floor"], 2.5)


def _put(value: float, cpu_s: float, generator_cpu_s: float, generator: str = "curl") -> Sample:
    return Sample(
        value=value,
        generator=generator,
        usage=Usage(cpu_s=cpu_s, hwm_mib=60.0, rss_max_mib=60.0, wall_s=1.0),
        bytes_moved=GiB,
        extra={"generator_cpu_s": generator_cpu_s},
    )


class LimitsTextTests(SynchronousTestCase):
    def test_ceiling_and_reach_are_reported_against_nginx(self) -> None:
        results = Results()
        for value in (500.0, 512.0, 520.0):
            results.add("put_large", "artifactd", _put(value, 3.0, 0.5))
            results.add("put_large", "nginx", _put(2 * value, 1.0, 0.5))
        text = report.limits_text(results, _limits(), 2, Config())
        # ceiling 2 * 1024 / (2.5 + 0.5) = 683 MiB/s; nginx's median 1024 MiB/s
        self.assertIn("= 2.50 in the server", text)
        self.assertIn("at most 683 MiB/s = 0.67x nginx's PUT (1024 MiB/s)", text)
        # (3.0 + 0.5) s/GiB at 512 MiB/s on 2 cores: 87.5% busy
        self.assertIn("artifactd: 512 MiB/s at 3.00 CPU s/GiB", text)
        self.assertIn("were 88% busy", text)

    def test_the_sendfile_sender_gets_its_own_ceiling(self) -> None:
        results = Results()
        for value in (560.0, 570.0, 580.0):
            results.add("put_large_raw", "artifactd", _put(value, 3.2, 0.125, "bench/rawput.py"))
            results.add("put_large_raw", "nginx", _put(value + 200, 1.0, 0.125, "bench/rawput.py"))
        text = report.limits_text(results, _limits(md5=1.0), 2, Config())
        self.assertNotIn("curl spent", text)
        # 2 * 1024 / (2.0 + 0.125) = 964 MiB/s (MD5 alone: 1024); nginx's median 770 MiB/s
        self.assertIn(
            "the sendfile sender spent 0.12 on artifactd's PUTs: with 2 cores busy all the"
            " time and no overhead, at most 964 MiB/s = 1.25x nginx's PUT (770 MiB/s)",
            text,
        )
        # (3.2 + 0.125) s/GiB at 570 MiB/s on 2 cores: 92.5% busy
        self.assertIn("with the sendfile sender's, the 2 cores were 93% busy", text)

    def test_without_put_rounds_only_the_steps_are_shown(self) -> None:
        text = report.limits_text(Results(), _limits(), 2, Config())
        self.assertIn("MD5 alone allows 683 MiB/s", text)
        self.assertNotIn("at most", text)


class StepTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="limits-")
        self.addCleanup(lambda: os.rmdir(self.dir))

    def test_write_leaves_nothing_behind(self) -> None:
        cpu, rate = limits.write_cpu(self.dir, 4 * MiB)
        self.assertGreaterEqual(cpu, 0.0)
        self.assertGreater(rate, 0.0)
        self.assertEqual(os.listdir(self.dir), [])

    def test_receive_moves_the_whole_file(self) -> None:
        path = os.path.join(self.dir, "body")
        self.addCleanup(os.unlink, path)
        with open(path, "wb") as f:
            f.write(os.urandom(3 * MiB + 17))
        self.assertGreaterEqual(limits.receive_cpu(path), 0.0)

    def test_hashes_run_over_whole_pieces(self) -> None:
        self.assertGreaterEqual(limits.hash_cpu("md5", 2 * MiB), 0.0)
        self.assertGreaterEqual(limits.hash_cpu("sha256", 2 * MiB), 0.0)


class RawPutTests(SynchronousTestCase):
    """bench/rawput.py sends the head and then the whole file, and reads the status; the suite
    runs it as a subprocess (``loadgen.raw_put``) and turns its line into a result."""

    def setUp(self) -> None:
        self.body = os.urandom(2 * MiB + 5)
        fd, self.path = tempfile.mkstemp(prefix="rawput-")
        self.addCleanup(os.unlink, self.path)
        with os.fdopen(fd, "wb") as f:
            f.write(self.body)
        self.got: dict[str, bytes] = {}
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(self.listener.close)
        self.port = self.listener.getsockname()[1]
        self.server = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        """One request: the head, then Content-Length bytes; answers 201."""
        conn, _ = self.listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            while len(rest) < len(self.body):
                chunk = conn.recv(1 << 20)
                if not chunk:
                    break
                rest += chunk
            self.got["head"], self.got["body"] = head, rest
            conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")

    def assertReceived(self) -> None:
        lines = self.got["head"].split(b"\r\n")
        self.assertEqual(lines[0], b"PUT /b/k?X-Amz-Signature=s HTTP/1.1")
        self.assertIn(f"Content-Length: {len(self.body)}".encode(), lines)
        self.assertEqual(hashlib.md5(self.got["body"]).digest(), hashlib.md5(self.body).digest())

    def test_sends_head_and_body(self) -> None:
        self.server.start()
        host = f"127.0.0.1:{self.port}"
        status, seconds, sent = rawput.put(self.port, host, "/b/k?X-Amz-Signature=s", self.path)
        self.server.join(10)
        self.assertEqual((status, sent), (201, len(self.body)))
        self.assertGreater(seconds, 0.0)
        self.assertReceived()

    def test_suite_runs_it_as_a_process(self) -> None:
        self.server.start()
        host = f"127.0.0.1:{self.port}"
        result = loadgen.raw_put(self.port, host, "/b/k?X-Amz-Signature=s", self.path)
        self.server.join(10)
        self.assertEqual((result.status, result.error), (201, ""))
        self.assertEqual((result.uploaded, result.downloaded), (len(self.body), 0))
        self.assertGreater(result.cpu_s, 0.0)
        self.assertReceived()

    def test_a_failed_sender_is_an_error_of_the_sample(self) -> None:
        self.listener.close()  # nothing listens (no server started): connection refused
        result = loadgen.raw_put(self.port, "x", "/b/k", self.path)
        self.assertEqual(result.status, 0)
        self.assertTrue(result.error.startswith("rawput exit 1: "), result.error)
        self.assertIn("ConnectionRefusedError", result.error)
