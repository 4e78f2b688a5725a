"""The workloads, each run against one server for ``config.rounds`` rounds.

Every measured run is wrapped in a :class:`ProcessMeter` of the server (its CPU seconds, peak
RSS) and reports the load generator's own CPU.  Anything but a 2xx answer is recorded as an
error of the sample, never dropped."""

from __future__ import annotations

import functools
import http.client
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from bench import loadgen, populate
from bench.procstat import ProcessMeter, Usage
from bench.results import Config, MiB, Results, Sample
from bench.servers import HOST, ArtifactdServer, NginxServer, Server, ServerFailed, http_request
from bench.signing import Signer

T = TypeVar("T")


class Context:
    """What every workload needs: sizes, files, the signer, where results go."""

    def __init__(
        self,
        config: Config,
        workdir: str,
        signer: Signer,
        results: Results,
        large_file: str,
        medium_file: str,
    ) -> None:
        self.config = config
        self.workdir = workdir
        self.signer = signer
        self.results = results
        self.large_file = large_file
        self.medium_file = medium_file
        self._presigned: dict[str, list[str]] = {}

    def log(self, message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)

    def targets(
        self, server: Server, name: str, operation: str, bucket: str, keys: list[str]
    ) -> str:
        """A file of request targets, one per key: presigned once per run and shared by the
        signed servers (artifactd checks them, moto ignores them), plain paths for nginx."""
        if server.signed:
            if name not in self._presigned:
                started = time.perf_counter()
                self._presigned[name] = [server.target(operation, bucket, k) for k in keys]
                self.log(
                    f"presigned {len(keys)} {operation} targets in"
                    f" {time.perf_counter() - started:.1f}s"
                )
            lines = self._presigned[name]
        else:
            lines = [server.target(operation, bucket, k) for k in keys]
        path = os.path.join(self.workdir, f"targets-{name}-{server.name}.txt")
        return loadgen.write_targets(path, lines)

    def one_target(self, server: Server, name: str, target: str) -> str:
        path = os.path.join(self.workdir, f"targets-{name}-{server.name}.txt")
        return loadgen.write_targets(path, [target])

    def record(self, metric: str, server: Server, sample: Sample, unit: str) -> None:
        self.results.add(metric, server.name, sample)
        shown = "-" if sample.value is None else f"{sample.value:.4g}"
        rss = f", server peak RSS {sample.usage.hwm_mib:.0f} MiB" if sample.usage else ""
        gen = (
            f", {sample.generator} CPU {sample.generator_cpu_pct:.0f}%"
            if sample.generator_cpu_pct is not None
            else ""
        )
        errors = f"  ERRORS: {'; '.join(sample.errors)}" if sample.errors else ""
        self.log(f"  {server.name:9s} {metric:15s} {shown} {unit}{rss}{gen}{errors}")


def measured(server: Server, action: Callable[[], T]) -> tuple[T, Usage]:
    meter = ProcessMeter(server.pids).start()
    try:
        result = action()
    finally:
        usage = meter.stop()
    return result, usage


def curl_sample(result: loadgen.CurlResult, usage: Usage, size: int, upload: bool) -> Sample:
    moved = result.uploaded if upload else result.downloaded
    errors = [result.error] if result.error else []
    if not errors and moved != size:
        errors.append(f"moved {moved} bytes, expected {size}")
    return Sample(
        value=size / MiB / result.seconds if result.seconds > 0 and not errors else None,
        generator="curl",
        generator_cpu_pct=result.cpu_pct,
        usage=usage,
        bytes_moved=size,
        errors=errors,
        extra={
            "curl_seconds": result.seconds,
            "http_status": result.status,
            "generator_cpu_s": result.cpu_s,
        },
    )


def wrk_sample(
    result: loadgen.WrkResult, usage: Usage, value: float, server: Server, probe: str
) -> Sample:
    errors = []
    if result.error_text():
        detail = populate.check_status(server, "GET", probe) if probe else ""
        errors.append(f"wrk errors: {result.error_text()} of {result.requests} requests {detail}")
    if result.requests == 0:
        errors.append("no request completed")
    return Sample(
        value=value if result.requests else None,
        generator=f"wrk -t{result.threads} -c{result.connections}",
        generator_cpu_pct=result.cpu_pct,
        generator_cores=min(result.threads, os.cpu_count() or 1),
        usage=usage,
        bytes_moved=result.bytes,
        errors=errors,
        extra={
            "requests": result.requests,
            "duration_s": result.duration_s,
            "latency_ms": result.latency_ms,
            "wrk_errors": result.errors,
        },
    )


def fresh(server: Server, *buckets: str) -> None:
    server.reset()
    for bucket in buckets:
        server.create_bucket(bucket)


# ------------------------------------------------------------ large bodies
def large_bodies(ctx: Context, server: Server, size: int, path: str, metric: str) -> None:
    """PUT then GET of one object with curl, then deleted; for the 1 GiB body the GET again
    through bench/rawget.py, and after the delete a PUT through bench/rawput.py, deleted too."""
    bucket = "bodies"
    fresh(server, bucket)
    url = server.base_url + server.object_path(bucket, "object")
    auth = server.curl_auth()
    for round_ in range(ctx.config.rounds):
        os.sync()  # no write-back of an earlier round in this one
        put, usage = measured(server, lambda: loadgen.curl(url, auth, upload=path))
        ctx.record(f"put_{metric}", server, curl_sample(put, usage, size, True), "MiB/s")
        get, usage = measured(server, lambda: loadgen.curl(url, auth))
        ctx.record(f"get_{metric}", server, curl_sample(get, usage, size, False), "MiB/s")
        if metric == "large":  # is curl the limit? the same GET with a cheaper reader
            target = server.target("get_object", bucket, "object")
            read = functools.partial(loadgen.raw_get, server.port, server.host, target)
            raw, usage = measured(server, read)
            sample = curl_sample(raw, usage, size, False)
            sample.generator = "bench/rawget.py"
            ctx.record("get_large_raw", server, sample, "MiB/s")
        server.delete_object(bucket, "object")
        if metric == "large":  # is curl the limit? the same PUT with a cheaper sender
            os.sync()
            target = server.target("put_object", bucket, "object")
            send = functools.partial(loadgen.raw_put, server.port, server.host, target, path)
            raw, usage = measured(server, send)
            sample = curl_sample(raw, usage, size, True)
            sample.generator = "bench/rawput.py"
            ctx.record("put_large_raw", server, sample, "MiB/s")
            server.delete_object(bucket, "object")
        ctx.log(f"  {server.name} {metric} round {round_ + 1} done")


def large(ctx: Context, server: Server) -> None:
    large_bodies(ctx, server, ctx.config.large, ctx.large_file, "large")


def medium(ctx: Context, server: Server) -> None:
    large_bodies(ctx, server, ctx.config.medium, ctx.medium_file, "medium")


# ----------------------------------------------------------- small objects
def put_small(ctx: Context, server: Server) -> None:
    """4 KiB PUTs, every one to a new key with a distinct body; an empty bucket each round."""
    config = ctx.config
    bucket = "small-put"
    keys = [f"p/{i:06d}" for i in range(config.put_keys)]
    targets = ctx.targets(server, "put-small", "put_object", bucket, keys)
    for connections, metric in zip(config.small_connections, ("lo", "hi"), strict=True):
        for _ in range(config.rounds):
            fresh(server, bucket)
            os.sync()
            run = functools.partial(
                loadgen.wrk,
                server.port,
                server.host,
                "put",
                targets,
                connections=connections,
                seconds=config.small_seconds,
                extra=(config.small,),
            )
            result, usage = measured(server, run)
            sample = wrk_sample(result, usage, result.rate, server, "")
            if result.requests > config.put_keys:
                sample.extra["note"] = "more requests than keys: later ones overwrote"
            ctx.record(f"put_small_{metric}", server, sample, "ops/s")


def get_small(ctx: Context, server: Server) -> None:
    """4 KiB GETs cycling through ``get_keys`` objects (distinct contents)."""
    config = ctx.config
    bucket = "small-get"
    keys = [f"g/{i:06d}" for i in range(config.get_keys)]
    fresh(server, bucket)
    body = os.urandom(config.small)
    loaded = populate.http_load(
        server, bucket, keys, lambda key: key.encode().ljust(32, b"-") + body[32:]
    )
    ctx.log(f"  {server.name}: {loaded.keys} small objects uploaded in {loaded.seconds:.1f}s")
    targets = ctx.targets(server, "get-small", "get_object", bucket, keys)
    probe = server.target("get_object", bucket, keys[0])
    for connections, metric in zip(config.small_connections, ("lo", "hi"), strict=True):
        for _ in range(config.rounds):
            run = functools.partial(
                loadgen.wrk,
                server.port,
                server.host,
                "get",
                targets,
                connections=connections,
                seconds=config.small_seconds,
            )
            result, usage = measured(server, run)
            sample = wrk_sample(result, usage, result.rate, server, probe)
            ctx.record(f"get_small_{metric}", server, sample, "ops/s")


def ranges(ctx: Context, server: Server) -> None:
    """1 MiB GETs at random offsets of the medium object."""
    config = ctx.config
    bucket = "ranges"
    fresh(server, bucket)
    upload = loadgen.curl(
        server.base_url + server.object_path(bucket, "object"),
        server.curl_auth(),
        upload=ctx.medium_file,
    )
    if upload.error:
        raise ServerFailed(f"{server.name}: uploading the range object: {upload.error}")
    probe = server.target("get_object", bucket, "object")
    targets = ctx.targets(server, "range", "get_object", bucket, ["object"])
    for _ in range(config.rounds):
        result, usage = measured(
            server,
            lambda: loadgen.wrk(
                server.port,
                server.host,
                "range",
                targets,
                connections=config.range_connections,
                seconds=config.small_seconds,
                extra=(config.range_size, config.medium),
            ),
        )
        sample = wrk_sample(result, usage, result.rate, server, probe)
        expected = result.requests * config.range_size
        if result.requests and result.bytes < expected:
            sample.errors.append(f"received {result.bytes} bytes, expected over {expected}")
        ctx.record("range", server, sample, "ops/s")


# ---------------------------------------------------------------- listings
_KEY = re.compile(rb"<Key>")


def list_page(ctx: Context, server: Server, metric: str, target: str, per_page: float) -> None:
    """ms per page of ``target`` (one connection; wrk's mean latency / ``per_page``)."""
    status, data = http_request(server.port, "GET", target)
    entries = len(_KEY.findall(data)) if server.signed else data.count(b"<a href=")
    check = [] if status == 200 else [f"{target[:60]}: {status} {data[:200]!r}"]
    targets = ctx.one_target(server, metric, target)
    for _ in range(ctx.config.rounds):
        result, usage = measured(
            server,
            lambda: loadgen.wrk(
                server.port,
                server.host,
                "get",
                targets,
                connections=1,
                seconds=ctx.config.list_seconds,
            ),
        )
        sample = wrk_sample(result, usage, result.latency_ms["mean"] / per_page, server, target)
        sample.errors[:0] = check
        sample.extra["entries_in_page"] = entries
        ctx.record(metric, server, sample, "ms/page")


def listing(ctx: Context, server: Server) -> None:
    config = ctx.config
    keys = config.list_keys
    bucket, big_bucket = "list-small", "list-big"
    names = (populate.key_name(i) for i in range(keys))
    info = ctx.results.info.setdefault(server.name, {})
    middle = populate.key_name(keys // 2)
    if isinstance(server, NginxServer):
        fresh(server, bucket)
        loaded = populate.files_load(server.root, bucket, names)
        info["list_populate"] = {"keys": loaded.keys, "seconds": loaded.seconds, "how": "files"}
        # one autoindex page of the whole directory, counted as keys / page pages
        per_page = keys / config.list_page
        list_page(ctx, server, "list_first", f"/{bucket}/k/", per_page)
        for sample in ctx.results.of("list_first", server.name):
            ctx.results.add("list_deep", server.name, sample)
        return
    if isinstance(server, ArtifactdServer):
        fresh(server, bucket, big_bucket, "seed")
        server.put_object("seed", "seed", b"seed object for the bulk loader\n")
        with server.stopped() as data_dir:
            small = populate.bulk_load(data_dir, "seed", "seed", bucket, keys)
            ctx.log(f"  bulk-loaded {small.keys} keys in {small.seconds:.1f}s")
            big = populate.bulk_load(data_dir, "seed", "seed", big_bucket, config.list_big_keys)
            ctx.log(f"  bulk-loaded {big.keys} keys in {big.seconds:.1f}s ({big.per_second:.0f}/s)")
        ctx.log(
            f"  artifactd started over {big.keys + small.keys} keys in {server.last_start_s:.1f}s"
        )
        info["list_populate"] = {
            "how": "bulk loader (KVMetadataStore over LevelDBKV(sync=False)), daemon stopped",
            "keys": small.keys,
            "seconds": small.seconds,
            "big_keys": big.keys,
            "big_seconds": big.seconds,
            "big_keys_per_second": big.per_second,
            "daemon_start_seconds_after_load": server.last_start_s,
        }
    else:
        fresh(server, bucket)
        loaded = populate.boto3_load(server, bucket, names)
        ctx.log(f"  {server.name}: {loaded.keys} keys put with boto3 in {loaded.seconds:.1f}s")
        info["list_populate"] = {"keys": loaded.keys, "seconds": loaded.seconds, "how": "boto3"}

    def page(b: str, after: str | None) -> str:
        params: dict[str, Any] = {"MaxKeys": config.list_page}
        if after is not None:
            params["StartAfter"] = after
        return server.target("list_objects_v2", b, **params)

    list_page(ctx, server, "list_first", page(bucket, None), 1)
    list_page(ctx, server, "list_deep", page(bucket, middle), 1)
    if isinstance(server, ArtifactdServer):
        big_middle = populate.key_name(config.list_big_keys // 2)
        list_page(ctx, server, "list_big_first", page(big_bucket, None), 1)
        list_page(ctx, server, "list_big_deep", page(big_bucket, big_middle), 1)


# --------------------------------------------------------------- multipart
class Probe:
    """Small GETs every ``interval`` on its own thread and connection, recording (start, end)."""

    def __init__(self, port: int, target: str, interval: float = 0.01) -> None:
        self.port = port
        self.target = target
        self.interval = interval
        self.calls: list[tuple[float, float]] = []
        self.failures: list[str] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        connection = http.client.HTTPConnection(HOST, self.port, timeout=120)
        try:
            while not self._stopping.is_set():
                started = time.perf_counter()
                try:
                    connection.request("GET", self.target)
                    response = connection.getresponse()
                    response.read()
                    if response.status != 200:
                        self.failures.append(f"probe GET: {response.status}")
                except (OSError, http.client.HTTPException) as e:
                    self.failures.append(f"probe GET: {e!r}")
                    connection.close()
                    connection = http.client.HTTPConnection(HOST, self.port, timeout=120)
                self.calls.append((started, time.perf_counter()))
                self._stopping.wait(self.interval)
        finally:
            connection.close()

    def worst_during(self, start: float, end: float) -> tuple[float | None, int]:
        """The longest probe that overlapped [start, end], and how many did."""
        during = [e - s for s, e in self.calls if s < end and e > start]
        return (max(during) if during else None), len(during)


_UPLOAD_ID = re.compile(rb"<UploadId>([^<]+)</UploadId>")


def multipart(ctx: Context, server: Server) -> None:
    """A multipart upload of the large file in ``mpu_parts`` parts (sent one after another over
    one connection); timed is CompleteMultipartUpload, from sent to answered, while a probe GETs
    a small object every ~10 ms."""
    config = ctx.config
    bucket, key = "multipart", "object"
    size, parts = config.large, config.mpu_parts
    part_size = -(-size // parts)
    for round_ in range(config.rounds):
        fresh(server, bucket)
        server.put_object(bucket, "probe", b"p" * 1024)
        created = server.request("POST", server.target("create_multipart_upload", bucket, key))
        match = _UPLOAD_ID.search(created)
        if match is None:
            raise ServerFailed(f"{server.name}: no UploadId in {created[:300]!r}")
        upload_id = match.group(1).decode()
        etags: list[str] = []
        connection = http.client.HTTPConnection(HOST, server.port, timeout=600)
        started = time.perf_counter()
        try:
            with open(ctx.large_file, "rb") as f:
                for n in range(1, parts + 1):
                    body = os.pread(f.fileno(), part_size, (n - 1) * part_size)
                    target = server.target(
                        "upload_part", bucket, key, UploadId=upload_id, PartNumber=n
                    )
                    connection.request("PUT", target, body=body)
                    response = connection.getresponse()
                    data = response.read()
                    if response.status != 200:
                        raise ServerFailed(f"{server.name}: part {n}: {response.status} {data!r}")
                    etags.append(response.getheader("ETag", ""))
            parts_s = time.perf_counter() - started
            xml = "".join(
                f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
                for n, etag in enumerate(etags, 1)
            )
            body = f"<CompleteMultipartUpload>{xml}</CompleteMultipartUpload>".encode()
            complete = server.target("complete_multipart_upload", bucket, key, UploadId=upload_id)
            os.sync()  # the parts' write-back is not the Complete's cost
            probe_target = server.target("get_object", bucket, "probe")
            cpu0 = time.process_time()
            with Probe(server.port, probe_target) as probe:
                time.sleep(0.05)
                meter = ProcessMeter(server.pids).start()
                sent = time.perf_counter()
                connection.request("POST", complete, body=body)
                response = connection.getresponse()
                first_byte = time.perf_counter()
                answer = response.read()
                answered = time.perf_counter()
                usage = meter.stop()
                time.sleep(0.05)
        finally:
            connection.close()
        errors = list(probe.failures)
        if response.status != 200 or b"<Error>" in answer:
            errors.append(f"Complete answered {response.status}: {answer[:300]!r}")
        worst, overlapping = probe.worst_during(sent, answered)
        seconds = answered - sent
        extra: dict[str, Any] = {
            "parts_upload_s": parts_s,
            "parts_upload_mib_s": size / MiB / parts_s,
            "first_byte_s": first_byte - sent,
            "probes_during_complete": overlapping,
        }
        generator_cpu = 100.0 * (time.process_time() - cpu0) / max(usage.wall_s, 1e-9)
        ctx.record(
            "mpu_complete",
            server,
            Sample(
                seconds,
                generator="python (this process, probe included)",
                generator_cpu_pct=generator_cpu,
                usage=usage,
                errors=errors,
                extra=extra,
            ),
            "s",
        )
        if worst is None:  # Complete ended before a probe overlapped it: bounded by its time
            extra = {**extra, "note": "no probe overlapped Complete; its duration is the bound"}
        ctx.record(
            "mpu_probe",
            server,
            Sample(1000 * (worst if worst is not None else seconds), extra=extra),
            "ms",
        )
        ctx.log(
            f"  {server.name} multipart round {round_ + 1}: parts at"
            f" {size / MiB / parts_s:.0f} MiB/s, Complete {seconds:.3f}s"
        )


# -------------------------------------------------------------- concurrent
def concurrent(ctx: Context, server: Server) -> None:
    """``concurrent_uploads`` curl PUTs of the large file at once, to distinct keys."""
    config = ctx.config
    bucket = "concurrent"
    n, size = config.concurrent_uploads, config.large
    needed = (n + 2) * size
    free = shutil.disk_usage(ctx.workdir).free
    fresh(server, bucket)
    auth = server.curl_auth()
    keys = [f"c/{i:02d}" for i in range(n)]
    commands = [
        loadgen.curl_command(
            server.base_url + server.object_path(bucket, k), auth, upload=ctx.large_file
        )
        for k in keys
    ]
    for _ in range(config.rounds):
        if free < needed:
            ctx.record(
                "concurrent",
                server,
                Sample(None, errors=[f"needs {needed >> 30} GiB free, has {free >> 30} GiB"]),
                "MiB/s",
            )
            return
        os.sync()
        done, usage = measured(server, lambda: loadgen.run_processes(commands))
        results = [loadgen.parse_curl(d) for d in done]
        errors = [f"{k}: {r.error}" for k, r in zip(keys, results, strict=True) if r.error]
        wall = max(d.wall_s for d in done)
        cpu = sum(d.cpu_s for d in done)
        sample = Sample(
            value=n * size / MiB / wall if not errors else None,
            generator=f"{n} curl",
            generator_cpu_pct=100.0 * cpu / wall,
            generator_cores=min(n, os.cpu_count() or 1),
            usage=usage,
            bytes_moved=n * size,
            errors=errors,
            extra={"per_upload_seconds": [r.seconds for r in results]},
        )
        ctx.record("concurrent", server, sample, "MiB/s")
        for k in keys:
            server.delete_object(bucket, k)
        os.sync()
        free = shutil.disk_usage(ctx.workdir).free


WORKLOADS: dict[str, Callable[[Context, Server], None]] = {
    "large": large,
    "medium": medium,
    "put-small": put_small,
    "get-small": get_small,
    "range": ranges,
    "list": listing,
    "multipart": multipart,
    "concurrent": concurrent,
}

# which servers run which workload (the others have no such operation, or are not compared)
APPLIES: dict[str, tuple[str, ...]] = {
    "multipart": ("artifactd", "moto"),
    "concurrent": ("artifactd",),
}
