"""The benchmark suite of issue 4: artifactd against nginx and moto, one server at a time, the
same workloads and the same C load generators (curl, wrk) against each.

Run it through ``./scripts/bench`` (which installs nginx, wrk and moto first):

    ./scripts/bench [--quick] [--only large,list,...] [--servers artifactd,nginx] [--rounds N]
                    [--json PATH] [--dir DIR] [--keep]

Prints the table of medians to stdout (progress goes to stderr) and writes every round, the
machine and the versions to JSON (default bench/results/<UTC timestamp>.json).  Exits 1 if any
request failed (non-2xx, socket errors), so failures are never hidden behind a number.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from typing import Any

from bench import limits, report
from bench.results import SERVERS, Config, Results, metrics
from bench.servers import (
    ArtifactdServer,
    MotoServer,
    NginxServer,
    Server,
    ServerFailed,
    free_port,
)
from bench.signing import Signer, signing_cost
from bench.workloads import APPLIES, WORKLOADS, Context
from tests.e2e.daemon import write_pattern_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MOTO = os.path.join(ROOT, ".venv-bench", "bin", "moto_server")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description="artifactd vs nginx vs moto (issue 4)"
    )
    parser.add_argument(
        "--only",
        default=",".join(WORKLOADS),
        help=f"workloads, comma-separated (default all: {','.join(WORKLOADS)})",
    )
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help="servers, comma-separated (default all)"
    )
    parser.add_argument("--rounds", type=int, help="rounds per workload (default 3; 1 if --quick)")
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes and shorter runs, 1 round"
    )
    parser.add_argument("--json", help="where to write the JSON (default bench/results/<UTC>.json)")
    parser.add_argument(
        "--dir", default=tempfile.gettempdir(), help="where the temp dir goes (default: $TMPDIR)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    parser.add_argument("--moto-server", default=DEFAULT_MOTO, help="the moto_server executable")
    options = parser.parse_args(argv)
    options.only = [w.strip() for w in options.only.split(",") if w.strip()]
    options.servers = [s.strip() for s in options.servers.split(",") if s.strip()]
    for name in options.only:
        if name not in WORKLOADS:
            parser.error(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    for name in options.servers:
        if name not in SERVERS:
            parser.error(f"unknown server {name!r}; known: {', '.join(SERVERS)}")
    return options


def first_line(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
    except OSError as e:
        return repr(e)
    return (done.stdout.strip() or done.stderr.strip()).splitlines()[0]


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="utf-8") as f:
        mem_kib = int(f.readline().split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
    }


def versions(servers: dict[str, Server]) -> dict[str, str]:
    import botocore

    import twisted

    out = {
        "python": platform.python_version(),
        "twisted": twisted.__version__,
        "botocore": botocore.__version__,
        "curl": first_line(["curl", "--version"]),
        "wrk": first_line(["wrk", "-v"]),
    }
    for name, server in servers.items():
        out[name] = server.version()
    return out


def make_servers(options: argparse.Namespace, workdir: str, signer: Signer) -> dict[str, Server]:
    made: dict[str, Server] = {}
    for name in options.servers:
        if name == "artifactd":
            made[name] = ArtifactdServer(workdir, signer_port(signer), signer)
        elif name == "nginx":
            made[name] = NginxServer(workdir, free_port(), signer)
        else:
            made[name] = MotoServer(workdir, free_port(), signer, options.moto_server)
    return made


def signer_port(signer: Signer) -> int:
    return int(signer.endpoint_url.rsplit(":", 1)[1])


def run(options: argparse.Namespace, config: Config, workdir: str) -> int:
    started = time.time()
    results = Results()
    failures: list[str] = []
    # artifactd's port and keys are fixed up front: the targets presigned for it are replayed
    # (unchanged) to moto too
    signer = Signer(
        f"http://127.0.0.1:{free_port()}",
        "BENCH" + secrets.token_hex(6).upper(),
        secrets.token_hex(20),
    )
    servers = make_servers(options, workdir, signer)
    ctx = Context(
        config,
        workdir,
        signer,
        results,
        os.path.join(workdir, "large.bin"),
        os.path.join(workdir, "medium.bin"),
    )
    ctx.log(f"workdir {workdir}; measuring what signing costs")
    cost = signing_cost(signer)
    ctx.log(f"botocore on one core: {cost}")
    ctx.log("writing the bodies")
    write_pattern_file(ctx.large_file, config.large)
    write_pattern_file(ctx.medium_file, config.medium)
    machine_limits = None
    if "large" in options.only:  # the PUT ceiling shown beside the large PUT
        ctx.log("measuring what each step of a PUT costs on this machine")
        machine_limits = limits.measure(workdir, ctx.large_file)
        ctx.log(f"limits: {machine_limits}")
    for name, server in servers.items():
        todo = [w for w in options.only if name in APPLIES.get(w, SERVERS)]
        if not todo:
            continue
        ctx.log(f"== {name}: {', '.join(todo)}")
        try:
            server.start()
            for workload in todo:
                ctx.log(f"-- {name} {workload}")
                try:
                    WORKLOADS[workload](ctx, server)
                except (ServerFailed, OSError, RuntimeError, TimeoutError) as e:
                    # recorded and shown as a failure; the other workloads still run
                    traceback.print_exc()
                    failures.append(f"{name} {workload}: {e!r}")
                    server.stop()
                    server.start()
        finally:
            server.stop()
    finished = time.time()
    found = versions(servers)

    metric_list = [m for m in metrics(config) if m.group in options.only]
    text = report.table(results, metric_list, list(servers), config)
    print()
    print(text)
    print(
        f"Signing (botocore {found['botocore']}, one core, this run):"
        f" {cost['presigned_urls_per_cpu_s']:.0f} presigned URLs/s,"
        f" {cost['header_signatures_per_cpu_s']:.0f} header signatures/s. A pure-Python client"
        " signing each request could not exceed these; the 4 KiB rows replay URLs presigned"
        " beforehand (artifactd verifies each; moto ignores them; nginx gets plain paths)."
    )
    print(
        "a = artifactd.  a RSS MiB: artifactd's peak VmHWM over the rounds (reset before each);"
        " a CPU s/GiB: its utime+stime per GiB moved (median); gen CPU%: the load generator's"
        " CPU / wall, % of one core (wrk runs 2 threads: up to 200%), for nginx/artifactd/moto;"
        " '*' = it used 90% or more of what it could (the figure may be the client's limit)."
        "  '!' = a round had errors.  LIST on nginx: one autoindex GET of the whole directory"
        f" / {config.list_keys // config.list_page}."
    )
    print(report.targets_text(results, config))
    if machine_limits is not None:
        print(report.limits_text(results, machine_limits, os.cpu_count() or 1, config))
    errors = failures + report.errors_text(results)
    if errors:
        print(f"ERRORS ({len(errors)}): the bench failed; these answers were not 2xx:")
        for error in errors:
            print(f"  {error}")
    document = {
        "started_utc": iso(started),
        "finished_utc": iso(finished),
        "runtime_s": round(finished - started, 1),
        "argv": sys.argv[1:],
        "config": asdict(config),
        "servers": list(servers),
        "workloads": options.only,
        "machine": machine(),
        "versions": found,
        "signing_cost": cost,
        "limits": machine_limits.as_json() if machine_limits is not None else None,
        **report.results_json(results, metric_list, list(servers), config),
        "failures": failures,
        "table": text,
    }
    path = options.json or os.path.join(
        ROOT,
        "bench",
        "results",
        datetime.datetime.fromtimestamp(started, datetime.UTC).strftime("%Y%m%dT%H%M%SZ.json"),
    )
    report.write_json(path, document)
    print(f"runtime {finished - started:.0f}s; JSON: {path}")
    return 1 if errors else 0


def iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat(timespec="seconds")


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    # SIGTERM unwinds like Ctrl-C, through the finally blocks that stop the servers
    signal.signal(signal.SIGTERM, _interrupted)
    config = Config.quick() if options.quick else Config()
    if options.rounds:
        config = dataclasses.replace(config, rounds=options.rounds)
    for tool in ("curl", "wrk", *(["nginx"] if "nginx" in options.servers else [])):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is required (scripts/bench installs it)")
    if "moto" in options.servers and not os.access(options.moto_server, os.X_OK):
        sys.exit(f"{options.moto_server} is missing (scripts/bench installs moto[server])")
    workdir = tempfile.mkdtemp(prefix="artifactd-bench-", dir=options.dir)
    try:
        return run(options, config, workdir)
    finally:
        if options.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
