"""The benchmark's PUT ceiling (bench/limits.py): its arithmetic, its report line, and that each
step really moves the bytes it is given."""

from __future__ import annotations

import os
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from bench import limits, report
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


def _put(value: float, cpu_s: float, generator_cpu_s: float) -> Sample:
    return Sample(
        value=value,
        generator="curl",
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
