"""The table of medians with ratios, the issue's targets with PASS/FAIL (reported, never
asserted), and the JSON file with every round."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from bench.limits import GiB, Limits
from bench.results import SERVERS, Config, Metric, Results, count_text, median, size_text


@dataclass(frozen=True)
class Verdict:
    metric: str  # the row it is shown on
    text: str  # the target, as the issue states it
    measured: str
    passed: bool | None  # None: not measured

    @property
    def mark(self) -> str:
        return {True: "PASS", False: "FAIL", None: "n/m"}[self.passed]


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def verdicts(results: Results, config: Config) -> list[Verdict]:
    out: list[Verdict] = []

    def check(
        metric: str, text: str, value: float | None, ok: Callable[[float], bool], shown: str
    ) -> None:
        out.append(Verdict(metric, text, shown if value is not None else "-", _pass(value, ok)))

    for metric, other, bound, higher in (
        ("put_large", "nginx", 0.6, True),
        ("put_large_raw", "nginx", 0.6, True),
        ("get_large", "nginx", 0.6, True),
        ("get_large_raw", "nginx", 0.6, True),
        ("put_small_hi", "moto", 5.0, True),
        ("get_small_hi", "moto", 10.0, True),
        ("list_first", "nginx", 2.0, False),
        ("list_deep", "nginx", 2.0, False),
    ):
        r = results.ratio(metric, other)
        sign = ">=" if higher else "<="
        ok = at_least(bound) if higher else at_most(bound)
        check(metric, f"{sign}{bound:g}x {other}", r, ok, _ratio(r))
    small = count_text(config.list_keys)
    for big, base in (("list_big_first", "list_first"), ("list_big_deep", "list_deep")):
        a, b = results.median(big, "artifactd"), results.median(base, "artifactd")
        r = a / b if a is not None and b else None
        check(big, f"<= {small} page (+10% noise)", r, lambda v: v <= 1.10, f"{_ratio(r)} {small}")
    complete = results.median("mpu_complete", "artifactd")
    check("mpu_complete", "< 2 s", complete, lambda v: v < 2.0, f"{_fmt(complete)} s")
    probe = results.median("mpu_probe", "artifactd")
    check("mpu_probe", "< 100 ms", probe, lambda v: v < 100.0, f"{_fmt(probe)} ms")
    for metric, limit in (
        ("put_large", 150),
        ("put_large_raw", 150),
        ("get_large", 150),
        ("get_large_raw", 150),
        ("concurrent", 300),
    ):
        rss = results.peak_rss(metric, "artifactd")
        check(metric, f"RSS < {limit} MiB", rss, below(limit), f"{_fmt(rss)} MiB")
    return out


def at_least(bound: float) -> Callable[[float], bool]:
    return lambda v: v >= bound


def at_most(bound: float) -> Callable[[float], bool]:
    return lambda v: v <= bound


def below(bound: float) -> Callable[[float], bool]:
    return lambda v: v < bound


def _pass(value: float | None, ok: Callable[[float], bool]) -> bool | None:
    return None if value is None else ok(value)


def table(results: Results, metrics: list[Metric], servers: list[str], config: Config) -> str:
    checks = verdicts(results, config)
    header = [
        "workload",
        "unit",
        *SERVERS,
        "a/nginx",
        "a/moto",
        "target (issue 4)",
        "a RSS MiB",
        "a CPU s/GiB",
        "gen CPU% " + "/".join(s[0] for s in SERVERS),
    ]
    rows: list[list[str]] = []
    for metric in metrics:
        if not any(results.of(metric.id, s) for s in servers):
            continue
        cells = [metric.label, metric.unit]
        for server in SERVERS:
            if server not in metric.servers:
                cells.append("n/a")
                continue
            value = _fmt(results.median(metric.id, server))
            cells.append(value + ("!" if results.errors(metric.id, server) else ""))
        cells.append(_ratio(results.ratio(metric.id, "nginx")))
        cells.append(_ratio(results.ratio(metric.id, "moto")))
        cells.append("; ".join(f"{v.text} {v.mark}" for v in checks if v.metric == metric.id) or "")
        cells.append(_fmt(results.peak_rss(metric.id, "artifactd")))
        cells.append(_fmt(results.cpu_per_gib(metric.id, "artifactd")) if metric.large_body else "")
        gen = [
            "-"
            if g is None
            else f"{g:.0f}" + ("*" if results.generator_saturated(metric.id, s) else "")
            for s in SERVERS
            for g in [results.generator_cpu(metric.id, s)]
        ]
        cells.append("/".join(gen))
        rows.append(cells)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    numeric = set(range(2, 7)) | {8, 9}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *(line(r) for r in rows), rule])


def targets_text(results: Results, config: Config) -> str:
    lines = ["Targets of issue 4 (artifactd; reported, not asserted):"]
    for v in verdicts(results, config):
        lines.append(f"  {v.mark:4s}  {v.metric:15s} {v.text:28s} measured {v.measured}")
    return "\n".join(lines)


def generator_cpu_per_gib(results: Results, metric: str, server: str) -> float | None:
    """The load generator's CPU seconds per GiB moved (median over the rounds)."""
    return median(
        [
            s.extra["generator_cpu_s"] / (s.bytes_moved / GiB)
            for s in results.of(metric, server)
            if "generator_cpu_s" in s.extra and s.bytes_moved and s.value is not None
        ]
    )


def limits_text(results: Results, limits: Limits, cores: int, config: Config) -> str:
    """The PUT ceiling the measured steps allow on this machine, beside what was reached."""
    tries = "/".join(f"{t:.2f}" for t in limits.write_tries)
    lines = [
        f"PUT {size_text(config.large)} ceiling on this machine (this run; each step alone on one"
        " core over a hot 1 MiB buffer, CPU s/GiB):",
        f"  loopback receive {limits.receive:.2f} + MD5 {limits.md5:.2f} + SHA-256"
        f" {limits.sha256:.2f} + page-cache write and fdatasync {limits.write:.2f} (cheapest of"
        f" {tries}) = {limits.server_floor:.2f} in the server; MD5 alone allows"
        f" {1024 / limits.md5:.0f} MiB/s (one core).",
    ]
    for metric, sender in (("put_large", "curl"), ("put_large_raw", "the sendfile sender")):
        spent = generator_cpu_per_gib(results, metric, "artifactd")
        if spent is None:
            continue
        nginx = results.median(metric, "nginx")
        ceiling = limits.ceiling(cores, spent)
        versus = f" = {ceiling / nginx:.2f}x nginx's PUT ({nginx:.0f} MiB/s)" if nginx else ""
        lines.append(
            f"  {sender} spent {spent:.2f} on artifactd's PUTs: with {cores} cores busy all the"
            f" time and no overhead, at most {ceiling:.0f} MiB/s{versus}."
        )
        reached = results.median(metric, "artifactd")
        cpu = results.cpu_per_gib(metric, "artifactd")
        if reached is not None and cpu is not None:
            busy = (cpu + spent) * reached / 1024 / cores
            lines.append(
                f"  artifactd: {reached:.0f} MiB/s at {cpu:.2f} CPU s/GiB; with {sender}'s,"
                f" the {cores} cores were {100 * busy:.0f}% busy."
            )
    return "\n".join(lines)


def errors_text(results: Results) -> list[str]:
    out: list[str] = []
    for (metric, server), samples in sorted(results.samples.items()):
        for round_, sample in enumerate(samples, 1):
            out.extend(f"{server} {metric} round {round_}: {e}" for e in sample.errors)
    return out


def write_json(path: str, document: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=2, sort_keys=False, default=str)
        f.write("\n")


def results_json(
    results: Results, metrics: list[Metric], servers: list[str], config: Config
) -> dict[str, Any]:
    rows = []
    for metric in metrics:
        per_server = {
            server: {
                "median": results.median(metric.id, server),
                "peak_rss_mib": results.peak_rss(metric.id, server),
                "cpu_s_per_gib": (
                    results.cpu_per_gib(metric.id, server) if metric.large_body else None
                ),
                "generator_saturated": results.generator_saturated(metric.id, server),
                "generator_cpu_pct": results.generator_cpu(metric.id, server),
                "rounds": [s.as_json() for s in results.of(metric.id, server)],
            }
            for server in servers
            if results.of(metric.id, server)
        }
        if per_server:
            rows.append(
                {
                    **asdict(metric),
                    "results": per_server,
                    "artifactd_over_nginx": results.ratio(metric.id, "nginx"),
                    "artifactd_over_moto": results.ratio(metric.id, "moto"),
                }
            )
    return {
        "metrics": rows,
        "targets": [asdict(v) | {"verdict": v.mark} for v in verdicts(results, config)],
        "errors": errors_text(results),
        "populate": results.info,
    }
