# twisted.trial's assertion methods are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""Crash safety: SIGKILL a real daemon at random moments under a write workload, restart it on
the same data directory and check what survived; and one daemon per data directory.

The kill moments and the workload come from one seed, printed at the start (set
``ARTIFACTD_CRASH_SEED`` to replay a run's sequence; the timing of a kill against the request in
flight still varies from run to run).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from typing import Any

from attrs import define, field, frozen
from twisted.trial.unittest import SynchronousTestCase

from artifactd.storage.tiered import SMALL_MAX
from tests.e2e.daemon import Daemon, DaemonFailed

MiB = 1024 * 1024
KILLS = 24
BUCKET = "crash"
LIVE_BYTES = 96 * MiB  # above this the workload deletes rather than uploads


def new_seed() -> int:
    value = os.environ.get("ARTIFACTD_CRASH_SEED")
    return int(value) if value else random.SystemRandom().randrange(2**32)


@frozen
class Expected:
    """What an object must read back as, if it exists."""

    sha256: str
    etag: str  # unquoted: md5 hex, or md5 of the parts' md5s + "-N"
    size: int
    blobs: tuple[str, ...]  # sha256 of each blob it is made of (one per part for multipart)


def single(body: bytes) -> Expected:
    digest = hashlib.sha256(body).hexdigest()
    return Expected(digest, hashlib.md5(body).hexdigest(), len(body), (digest,))


def composed(parts: list[bytes]) -> Expected:
    whole = hashlib.sha256()
    for part in parts:
        whole.update(part)
    md5s = b"".join(hashlib.md5(p).digest() for p in parts)
    return Expected(
        whole.hexdigest(),
        f"{hashlib.md5(md5s).hexdigest()}-{len(parts)}",
        sum(len(p) for p in parts),
        tuple(hashlib.sha256(p).hexdigest() for p in parts),
    )


@define
class Model:
    """What the client knows.  Keys are never reused, so each key is in at most one state."""

    confirmed: dict[str, Expected]  # a 2xx was received for its upload, none for a delete
    maybe: dict[str, Expected]  # the upload failed in flight: absent, or present as expected
    deleting: dict[str, Expected]  # the delete failed in flight: present as expected, or absent
    deleted: set[str]  # a 2xx was received for its delete: must be absent
    # (upload id, number) -> (sha256, md5, size) sent
    parts: dict[tuple[str, int], tuple[str, str, int]]
    lock: threading.Lock

    def expected(self, key: str) -> Expected | None:
        return self.confirmed.get(key) or self.maybe.get(key) or self.deleting.get(key)

    def live_bytes(self) -> int:
        return sum(e.size for e in self.confirmed.values())

    def small_blobs(self) -> set[str]:
        """The digests of every body sent that the daemon keeps in its metadata store, not in
        a blob file (tiered.SMALL_MAX bytes or fewer)."""
        expected = [*self.confirmed.values(), *self.maybe.values(), *self.deleting.values()]
        small = {e.blobs[0] for e in expected if len(e.blobs) == 1 and e.size <= SMALL_MAX}
        small.update(sha for sha, _, size in self.parts.values() if size <= SMALL_MAX)
        return small


@define
class Multipart:
    key: str
    parts: list[bytes]
    upload_id: str | None = None
    sent: int = 0  # parts acknowledged
    etags: list[str] = field(factory=list)
    attempts: int = 0  # failed attempts of the current step


class Workload:
    """Uploads, multipart uploads and deletes, one request at a time, on its own thread.

    The main thread gates it: the workload starts a request only while ``running`` is set and
    sets ``idle`` while it waits.  Every outcome is recorded in the model as the client saw it.
    """

    def __init__(self, daemon: Daemon, model: Model, seed: int) -> None:
        self.daemon = daemon
        self.model = model
        self.rng = random.Random(seed)
        self.running = threading.Event()
        self.idle = threading.Event()
        self.finished = False
        self.current = "idle"  # the request in flight, read by the main thread at a kill
        self.counts: Counter[str] = Counter()  # requests by kind and outcome
        self.error: BaseException | None = None
        self._serial = 0
        self._multipart: Multipart | None = None
        self._shared = [b""] + [self.rng.randbytes(self.rng.randrange(1, 3 * MiB)) for _ in "abc"]
        self._thread = threading.Thread(target=self._main, name="crash-workload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        self.finished = True
        self.running.set()
        self._thread.join(60)

    # ---------------------------------------------------------------- loop
    def _main(self) -> None:
        try:
            client = self.daemon.client()
            while True:
                if not self.running.is_set():
                    client = self.daemon.client()  # no pooled connections to a dead process
                    self.idle.set()
                    self.running.wait()
                    self.idle.clear()
                if self.finished:
                    return
                self._step(client)
                self.current = "idle"
        except BaseException as e:  # reported by the test
            self.error = e
            self.idle.set()

    def _key(self, kind: str) -> str:
        self._serial += 1
        return f"{kind}/{self._serial:05d}"

    def _step(self, client: Any) -> None:
        if self._multipart is not None:
            self._multipart_step(client, self._multipart)
            return
        model = self.model
        choice = self.rng.random()
        if model.confirmed and (choice < 0.25 or model.live_bytes() > LIVE_BYTES):
            self._delete(client, self.rng.choice(sorted(model.confirmed)))
        elif choice < 0.4:
            self._multipart = self._new_multipart()
        else:
            self._put(client)

    def _body(self) -> bytes:
        if self.rng.random() < 0.25:
            return self.rng.choice(self._shared)  # the same content under several keys
        size = self.rng.choice([0, self.rng.randrange(1, 64 * 1024), self.rng.randrange(3 * MiB)])
        return self.rng.randbytes(size)

    def _put(self, client: Any) -> None:
        key, body = self._key("put"), self._body()
        expected = single(body)
        self.current = "put"
        try:
            response = client.put_object(Bucket=BUCKET, Key=key, Body=body)
        except Exception:
            self.counts["put uncertain"] += 1
            with self.model.lock:
                self.model.maybe[key] = expected
            return
        headers = response["ResponseMetadata"]["HTTPHeaders"]
        if response["ETag"] != f'"{expected.etag}"':
            raise AssertionError(f"PUT {key}: ETag {response['ETag']} for {expected}")
        if headers.get("x-artifactd-digest") != f"sha256:{expected.sha256}":
            raise AssertionError(f"PUT {key}: digest {headers.get('x-artifactd-digest')}")
        self.counts["put ok"] += 1
        with self.model.lock:
            self.model.confirmed[key] = expected

    def _delete(self, client: Any, key: str) -> None:
        with self.model.lock:
            expected = self.model.confirmed.pop(key)
            self.model.deleting[key] = expected
        self.current = "delete"
        try:
            client.delete_object(Bucket=BUCKET, Key=key)
        except Exception:
            self.counts["delete uncertain"] += 1
            return
        self.counts["delete ok"] += 1
        with self.model.lock:
            del self.model.deleting[key]
            self.model.deleted.add(key)

    def _new_multipart(self) -> Multipart:
        parts = [self.rng.randbytes(5 * MiB) for _ in range(self.rng.choice([2, 3]))]
        tail = self.rng.choice(self._shared[1:]) if self.rng.random() < 0.3 else None
        parts.append(tail if tail is not None else self.rng.randbytes(self.rng.randrange(1, MiB)))
        return Multipart(self._key("multipart"), parts)

    def _multipart_step(self, client: Any, mp: Multipart) -> None:
        """One request of the upload: create, the next part, or complete (sometimes abort)."""
        try:
            if mp.upload_id is None:
                self.current = "create upload"
                created = client.create_multipart_upload(Bucket=BUCKET, Key=mp.key)
                mp.upload_id = created["UploadId"]
            elif mp.sent < len(mp.parts):
                number, body = mp.sent + 1, mp.parts[mp.sent]
                with self.model.lock:
                    self.model.parts[(mp.upload_id, number)] = (
                        hashlib.sha256(body).hexdigest(),
                        hashlib.md5(body).hexdigest(),
                        len(body),
                    )
                self.current = "upload part"
                part = client.upload_part(
                    Bucket=BUCKET, Key=mp.key, UploadId=mp.upload_id, PartNumber=number, Body=body
                )
                mp.etags.append(part["ETag"])
                mp.sent += 1
            elif self.rng.random() < 0.1:
                self.current = "abort upload"
                self._multipart = None  # whatever happens, this upload is finished with
                client.abort_multipart_upload(Bucket=BUCKET, Key=mp.key, UploadId=mp.upload_id)
                self.counts["abort ok"] += 1
                return
            else:
                self._complete(client, mp)
                return
            mp.attempts = 0
            self.counts[f"{self.current} ok"] += 1
        except Exception:
            self.counts[f"{self.current} uncertain"] += 1
            mp.attempts += 1
            if mp.upload_id is None or mp.attempts >= 3:
                self._multipart = None  # an upload we never learned of holds no parts

    def _complete(self, client: Any, mp: Multipart) -> None:
        expected = composed(mp.parts)
        self._multipart = None
        self.current = "complete upload"
        done = {"Parts": [{"PartNumber": i + 1, "ETag": etag} for i, etag in enumerate(mp.etags)]}
        try:
            response = client.complete_multipart_upload(
                Bucket=BUCKET, Key=mp.key, UploadId=mp.upload_id, MultipartUpload=done
            )
        except Exception:
            self.counts["complete upload uncertain"] += 1
            with self.model.lock:
                self.model.maybe[mp.key] = expected
            return
        if response["ETag"] != f'"{expected.etag}"':
            raise AssertionError(f"complete {mp.key}: ETag {response['ETag']} for {expected}")
        self.counts["complete upload ok"] += 1
        with self.model.lock:
            self.model.confirmed[mp.key] = expected


def blob_files(data_dir: str) -> dict[str, str]:
    """digest -> path of every file in the blob store."""
    found: dict[str, str] = {}
    root = os.path.join(data_dir, "blobs")
    for directory, _, files in os.walk(root):
        for name in files:
            found[name] = os.path.join(directory, name)
    return found


def read_object(client: Any, key: str) -> tuple[dict[str, str], int, str, str]:
    """(headers, size, sha256 hex, md5 hex) of the object's bytes, hashed while streaming."""
    response = client.get_object(Bucket=BUCKET, Key=key)
    sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
    for chunk in response["Body"].iter_chunks(MiB):
        sha.update(chunk)
        md5.update(chunk)
        size += len(chunk)
    return response["ResponseMetadata"]["HTTPHeaders"], size, sha.hexdigest(), md5.hexdigest()


class CrashTests(SynchronousTestCase):
    def test_sigkill_under_load_loses_nothing_acknowledged(self) -> None:
        """After each of 24 SIGKILLs under load and a restart: acknowledged writes and deletes
        hold, every object reads back whole, and no staging file or orphan blob is left."""
        seed = new_seed()
        print(f"\ncrash test seed: {seed} (ARTIFACTD_CRASH_SEED={seed} replays it)")
        rng = random.Random(seed)
        workdir = tempfile.mkdtemp(prefix="crash-", dir=os.getcwd())
        daemon = Daemon(workdir).start()
        self.addCleanup(daemon.kill)
        daemon.client().create_bucket(Bucket=BUCKET)
        model = Model({}, {}, {}, set(), {}, threading.Lock())
        workload = Workload(daemon, model, rng.randrange(2**32))
        self.addCleanup(workload.finish)
        workload.start()
        in_flight: Counter[str] = Counter()
        recovered: Counter[str] = Counter()
        started = time.monotonic()
        for kill in range(1, KILLS + 1):
            workload.running.set()
            time.sleep(rng.uniform(0.05, 1.0))
            # kill during a request (not while the client prepares its next one), if one comes
            deadline = time.monotonic() + 1.0
            while workload.current == "idle" and time.monotonic() < deadline:
                time.sleep(0.001)
            workload.running.clear()
            in_flight[workload.current] += 1
            daemon.kill()
            self.assertTrue(workload.idle.wait(30), "the workload did not stop")
            self.assertIsNone(workload.error, f"seed {seed}")
            daemon.start()
            context = f"seed {seed}, after kill {kill} ({workload.current})"
            recovered.update(self.recovery_report(daemon))
            self.check(daemon, model, context)
        workload.finish()
        self.assertIsNone(workload.error, f"seed {seed}")
        self.check(daemon, model, f"seed {seed}, at the end")
        status = daemon.stop()
        self.assertIn(status, (0, -15))  # twistd re-raises SIGTERM after a clean shutdown
        self.check_metadata(daemon, model, f"seed {seed}, metadata at rest")
        bad = [e for e in daemon.events() if e.get("level") in ("error", "critical")]
        self.assertEqual(bad, [], f"seed {seed}")
        print(
            f"{KILLS} kills in {time.monotonic() - started:.1f}s; request in flight at each kill:"
            f" {dict(in_flight)}\nrequests: {dict(sorted(workload.counts.items()))}\n"
            f"recovery totals: {dict(recovered)}; objects at the end: {len(model.confirmed)}"
            f" ({model.live_bytes() / MiB:.1f} MiB), deleted: {len(model.deleted)}"
        )
        self.assertGreaterEqual(workload.counts["put ok"], KILLS)
        shutil.rmtree(workdir)  # kept for inspection when anything above failed

    # ----------------------------------------------------------------- checks
    def recovery_report(self, daemon: Daemon) -> dict[str, int]:
        """The figures of this start's recovery event (printed when it repaired anything)."""
        for event in daemon.events(since_start=True):
            if event.get("msg", "").startswith("recovery:"):
                figures = {
                    k: int(event[k])
                    for k in ("staging_removed", "orphan_blobs_removed", "refcounts_fixed")
                }
                if any(figures.values()):
                    print(f"  {event['msg']}")
                return figures
        raise AssertionError(f"no recovery event:\n{daemon.tail()}")

    def check(self, daemon: Daemon, model: Model, context: str) -> None:
        """The daemon (just restarted, no request in flight) holds what the model allows."""
        staging = os.listdir(os.path.join(daemon.data_dir, "staging"))
        self.assertEqual(staging, [], f"{context}: staging files left")
        client = daemon.client()
        listed: dict[str, dict[str, Any]] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for item in page.get("Contents", []):
                listed[item["Key"]] = item
        referenced: set[str] = set()
        for key, item in listed.items():
            expected = model.expected(key)
            self.assertIsNotNone(expected, f"{context}: {key} exists but was never uploaded")
            assert expected is not None
            self.assertNotIn(key, model.deleted, f"{context}: {key} came back after its delete")
            self.assertEqual((item["Size"], item["ETag"]), (expected.size, f'"{expected.etag}"'))
            headers, size, sha, md5 = read_object(client, key)
            self.assertEqual(
                (size, sha, headers["x-artifactd-digest"], headers["etag"]),
                (expected.size, expected.sha256, f"sha256:{sha}", f'"{expected.etag}"'),
                f"{context}: {key} reads back wrong",
            )
            if len(expected.blobs) == 1:
                self.assertEqual(md5, expected.etag, f"{context}: {key} ETag is not its MD5")
            referenced.update(expected.blobs)
        missing = sorted(set(model.confirmed) - set(listed))
        self.assertEqual(missing, [], f"{context}: acknowledged uploads lost")
        # uploads in progress hold their parts' blobs too
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=BUCKET):
            for upload in page.get("Uploads", []):
                parts = client.list_parts(
                    Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"]
                )
                for part in parts.get("Parts", []):
                    sent = model.parts.get((upload["UploadId"], part["PartNumber"]))
                    self.assertIsNotNone(sent, f"{context}: a part we never sent: {part}")
                    assert sent is not None
                    self.assertEqual(part["ETag"], f'"{sent[1]}"')
                    referenced.add(sent[0])
        # small blobs live in the metadata store (checked at rest, with the daemon stopped)
        on_disk = set(blob_files(daemon.data_dir))
        self.assertEqual(
            (sorted(on_disk - referenced), sorted(referenced - on_disk - model.small_blobs())),
            ([], []),
            f"{context}: (orphan blob files, missing blobs)",
        )
        # settle the uncertain outcomes: what is there now was committed before the crash
        with model.lock:
            for key, expected in list(model.maybe.items()) + list(model.deleting.items()):
                if key in listed:
                    model.confirmed[key] = expected
                else:
                    model.deleted.add(key)
            model.maybe.clear()
            model.deleting.clear()

    def check_metadata(self, daemon: Daemon, model: Model, context: str) -> None:
        """With the daemon stopped: records, reference counts and blob files agree exactly."""
        from artifactd.storage import keys
        from artifactd.storage.kv import LevelDBKV
        from artifactd.storage.layout import Layout
        from artifactd.storage.metadata import KVMetadataStore

        kv = LevelDBKV(Layout(daemon.data_dir).metadata)
        meta = KVMetadataStore(kv)
        try:
            objects = {}
            counts: Counter[str] = Counter()
            for bucket in meta.list_buckets():
                start_after = ""
                while True:
                    page = meta.list_objects(bucket.name, "", "", start_after, 1000)
                    for record in page.objects:
                        objects[record.key] = record
                        counts.update(blob.digest for blob in record.blobs)
                    if not page.is_truncated or page.next_marker is None:
                        break
                    start_after = page.next_marker
            uploads = list(meta.all_uploads())
            for upload in uploads:
                parts, _ = meta.list_parts(upload.upload_id, 0, 10000)
                counts.update(part.blob.digest for part in parts)
            stored = {
                k[len(keys.REFCOUNT) :].decode(): keys.decode_count(v)
                for k, v in kv.scan(keys.REFCOUNT)
            }
            small = {digest: meta.get_small_blob(digest) for digest in meta.small_blob_digests()}
        finally:
            meta.close()
        self.assertEqual(sorted(objects), sorted(model.confirmed), context)
        for key, record in objects.items():
            expected = model.confirmed[key]
            self.assertEqual(
                (record.sha256, record.etag, record.size, tuple(b.digest for b in record.blobs)),
                (expected.sha256, expected.etag, expected.size, expected.blobs),
                f"{context}: {key}",
            )
        self.assertEqual(stored, dict(counts), f"{context}: reference counts")
        files = blob_files(daemon.data_dir)
        self.assertEqual(sorted(files.keys() | small.keys()), sorted(counts), f"{context}: blobs")
        self.assertEqual(files.keys() & small.keys(), set(), f"{context}: blobs stored twice")
        for digest, data in small.items():
            assert data is not None
            self.assertEqual(hashlib.sha256(data).hexdigest(), digest, f"{context}: {digest}")
        for digest, path in files.items():
            sha = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(MiB):
                    sha.update(chunk)
            self.assertEqual(sha.hexdigest(), digest, f"{context}: blob {path} is corrupt")
        print(
            f"at rest: {len(objects)} objects, {len(uploads)} uploads in progress,"
            f" {len(files)} blob files, {len(small)} small blobs, {sum(counts.values())}"
            " references"
        )


class OneDaemonPerDataDirTests(SynchronousTestCase):
    def run_second(self, first: Daemon) -> tuple[int, list[dict[str, Any]], str]:
        """Run a second twistd on ``first``'s data directory; (status, JSON events, output)."""
        second = Daemon(tempfile.mkdtemp(prefix="second-", dir=first.workdir))
        second.data_dir = first.data_dir
        proc = subprocess.run(
            second.command(), capture_output=True, cwd=second.workdir, timeout=60, check=False
        )
        output = (proc.stdout + proc.stderr).decode("utf-8", "replace")
        events = []
        for line in output.splitlines():
            if line.startswith("{"):
                events.append(json.loads(line))
        return proc.returncode, events, output

    def test_second_daemon_on_the_same_data_dir_refuses_to_start(self) -> None:
        """A second daemon exits 1 with one critical event naming the data directory, and its
        failed attempt leaves the first daemon's lock in place."""
        first = Daemon(tempfile.mkdtemp(prefix="first-", dir=os.getcwd())).start()
        self.addCleanup(first.kill)
        for _ in range(2):  # the second attempt proves the first one did not drop the lock
            status, events, output = self.run_second(first)
            self.assertEqual(status, 1, output)
            critical = [e for e in events if e.get("level") == "critical"]
            self.assertEqual(len(critical), 1, output)
            self.assertEqual(critical[0]["data_dir"], first.data_dir)
            self.assertIn(f"the data directory {first.data_dir} is in use", critical[0]["msg"])
            self.assertNotIn("Traceback", output)
        client = first.client()
        client.create_bucket(Bucket="still-serving")
        self.assertEqual(client.list_buckets()["Buckets"][0]["Name"], "still-serving")

    def test_start_failure_exits_non_zero(self) -> None:
        """A daemon that cannot listen exits non-zero (so systemd's Restart=on-failure sees it)."""
        first = Daemon(tempfile.mkdtemp(prefix="first-", dir=os.getcwd())).start()
        self.addCleanup(first.kill)
        second = Daemon(tempfile.mkdtemp(prefix="second-", dir=os.getcwd()))
        second.port = first.port  # taken
        with self.assertRaises(DaemonFailed) as caught:
            second.start()
        self.assertIn("artifactd exited with 1", str(caught.exception))
        self.assertIn("Address already in use", str(caught.exception))
