"""Filling buckets with many keys, per server, as fast as each allows.

- artifactd: with the daemon stopped, object records are written straight into its metadata
  store through artifactd's own classes (``KVMetadataStore`` over an unsynced ``LevelDBKV``).
  Every record is a copy of one seed object uploaded through HTTP first, under a new key, so all
  reference the seed's blob and reference counts stay right (``put_object`` counts them).
- moto: boto3 ``put_object`` calls from a thread pool.
- nginx: empty files created in its root directory.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.servers import HOST, Server, ServerFailed, http_request

KEY_FORMAT = "k/{:07d}"


def key_name(i: int) -> str:
    return KEY_FORMAT.format(i)


@dataclass
class Loaded:
    keys: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.keys / self.seconds if self.seconds > 0 else 0.0


LOAD_GROUP = 10_000


def bulk_load(data_dir: str, seed_bucket: str, seed_key: str, bucket: str, count: int) -> Loaded:
    """Put ``count`` records ``k/0000000``.. into ``bucket``, copies of ``seed_bucket/seed_key``.

    Only while no daemon has the data directory open.  The records go in groups of
    :data:`LOAD_GROUP` (``KVMetadataStore.group``: one LevelDB batch each), and the database is
    compacted at the end, as a store that grew over time would be, rather than left to compact
    in the background while the daemon is measured."""
    from attrs import evolve

    from artifactd.service import metadata_store
    from artifactd.storage.kv import LevelDBKV
    from artifactd.storage.layout import Layout

    kv = LevelDBKV(Layout(os.path.abspath(data_dir)).metadata, sync=False)
    store = metadata_store(kv)  # as the daemon builds it: records carry their listing rows
    try:
        seed = store.get_object(seed_bucket, seed_key)
        if seed is None:
            raise ServerFailed(f"no seed object {seed_bucket}/{seed_key} in {data_dir}")
        if store.get_bucket(bucket) is None:
            raise ServerFailed(f"no bucket {bucket} in {data_dir}")
        started = time.perf_counter()
        for first in range(0, count, LOAD_GROUP):
            with store.group():
                for i in range(first, min(first + LOAD_GROUP, count)):
                    store.put_object(evolve(seed, bucket=bucket, key=key_name(i)))
        kv.compact()
        return Loaded(count, time.perf_counter() - started)
    finally:
        store.close()


def boto3_load(server: Server, bucket: str, keys: Iterable[str], threads: int = 16) -> Loaded:
    """PUT an empty object at each key with boto3 from a thread pool (one client per thread)."""
    import boto3
    from botocore.config import Config

    local = threading.local()

    def client() -> Any:
        if not hasattr(local, "client"):
            local.client = boto3.client(
                "s3",
                endpoint_url=server.base_url,
                aws_access_key_id=server.signer.access_key,
                aws_secret_access_key=server.signer.secret_key,
                region_name="us-east-1",
                config=Config(
                    signature_version="s3v4",
                    s3={"addressing_style": "path"},
                    retries={"max_attempts": 1},
                    max_pool_connections=threads,
                ),
            )
        return local.client

    def put(key: str) -> None:
        client().put_object(Bucket=bucket, Key=key, Body=b"")

    return _pooled(put, keys, threads)


def http_load(
    server: Server, bucket: str, keys: Iterable[str], body: Callable[[str], bytes], threads: int = 8
) -> Loaded:
    """PUT ``body(key)`` at each key through HTTP (presigned for signed servers)."""
    import http.client

    local = threading.local()

    def put(key: str) -> None:
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection(HOST, server.port, timeout=300)
        connection: http.client.HTTPConnection = local.connection
        target = server.target("put_object", bucket, key)
        connection.request("PUT", target, body=body(key))
        response = connection.getresponse()
        data = response.read()
        if response.status not in (200, 201, 204):
            raise ServerFailed(f"{server.name}: PUT {key}: {response.status} {data[:200]!r}")

    return _pooled(put, keys, threads)


def files_load(root: str, bucket: str, keys: Iterable[str]) -> Loaded:
    """Create an empty file per key under nginx's root."""
    started = time.perf_counter()
    count = 0
    made: set[str] = set()
    for key in keys:
        path = os.path.join(root, bucket, key)
        parent = os.path.dirname(path)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        with open(path, "wb"):
            pass
        count += 1
    return Loaded(count, time.perf_counter() - started)


def _pooled(action: Callable[[str], None], keys: Iterable[str], threads: int) -> Loaded:
    started = time.perf_counter()
    count = 0
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(action, keys):
            count += 1
    return Loaded(count, time.perf_counter() - started)


def check_status(server: Server, method: str, target: str) -> str:
    """One request's status and the start of its body, to explain a failed run."""
    try:
        status, data = http_request(server.port, method, target, timeout=60)
    except OSError as e:
        return f"{method} {target[:60]}: {e!r}"
    return f"{method} {target[:60]}...: {status} {data[:200]!r}"
