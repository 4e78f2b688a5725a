# twisted.trial's assertion methods are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""Conditional writes: the pure rules (:mod:`artifactd.preconditions`), their atomic check in the
metadata store and the engine, and the HTTP surface (PutObject, CompleteMultipartUpload),
including interleaved writers of which exactly one may win."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from typing import TypeVar

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from artifactd import errors
from artifactd.preconditions import WriteCondition, check_write, etag_listed, write_condition
from artifactd.records import Bucket, ObjectRecord, Part, Upload
from artifactd.storage.engine import Engine, StagedBody, blob_of
from artifactd.testing import ManualRunner, build_engine
from tests import strategies  # noqa: F401  (registers the hypothesis profiles)
from tests.http_harness import Harness, Response, key_path, put_request, signed_request

T = TypeVar("T")
ABSENT = WriteCondition(if_none_match=True)
MiB = 1024 * 1024


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def stage(engine: Engine, data: bytes) -> StagedBody:
    staging = engine.blobs.open_staging()
    staging.write(data)
    staging.sync()
    digest = hashlib.sha256(data).hexdigest()
    return StagedBody(staging=staging, size=len(data), md5=md5(data), sha256=digest)


def record_of(body: StagedBody, key: str = "k") -> ObjectRecord:
    return ObjectRecord("bkt", key, body.size, body.md5, body.sha256, 1.0, blobs=(blob_of(body),))


# ---------------------------------------------------------------------------- pure rules
class RuleTests(SynchronousTestCase):
    def test_parse(self) -> None:
        """No header: unconditional; If-None-Match only '*'; If-Match kept as sent; both, or
        another If-None-Match, are 501 NotImplemented."""
        self.assertIsNone(write_condition({}))
        self.assertEqual(write_condition({"if-none-match": " * "}), ABSENT)
        self.assertEqual(write_condition({"if-match": '"abc"'}), WriteCondition(if_match='"abc"'))
        for headers in (
            {"if-none-match": '"abc"'},
            {"if-none-match": "*", "if-match": '"abc"'},
        ):
            self.assertRaises(errors.NotImplementedError_, write_condition, headers)

    @given(st.text("0123456789abcdef", min_size=1, max_size=34), st.booleans(), st.booleans())
    def test_etag_forms(self, etag: str, quoted: bool, weak: bool) -> None:
        """If-Match names an ETag quoted or not, weak or not, alone or in a list, or by '*'."""
        tag = f'"{etag}"' if quoted else etag
        tag = "W/" + tag if weak else tag
        self.assertTrue(etag_listed(tag, etag))
        self.assertTrue(etag_listed(f'"other", {tag}', etag))
        self.assertTrue(etag_listed("*", etag))
        self.assertFalse(etag_listed(f'"{etag}x"', etag))

    def test_outcomes(self) -> None:
        """412 when the key is taken (If-None-Match) or holds another ETag (If-Match); If-Match on
        no object is 404 on admission and 409 at commit (deleted concurrently)."""
        check_write(None, "e", at_commit=True)
        check_write(ABSENT, None, at_commit=True)
        self.assertRaises(errors.PreconditionFailed, check_write, ABSENT, "e", at_commit=True)
        match = WriteCondition(if_match='"e"')
        check_write(match, "e", at_commit=True)
        self.assertRaises(errors.PreconditionFailed, check_write, match, "f", at_commit=False)
        self.assertRaises(errors.NoSuchKey, check_write, match, None, at_commit=False)
        self.assertRaises(
            errors.ConditionalRequestConflict, check_write, match, None, at_commit=True
        )


# ----------------------------------------------------------------- metadata store, engine
class AtomicCheckTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.runner = ManualRunner()
        self.engine = build_engine(self.mktemp(), run=self.runner)
        self.engine.meta.create_bucket(Bucket("bkt", 1.0))

    def put(self, data: bytes, condition: WriteCondition | None) -> Deferred[ObjectRecord]:
        body = stage(self.engine, data)
        return self.engine.put_object(body, record_of(body), condition)

    def test_interleaved_create_only_puts(self) -> None:
        """Two If-None-Match puts queued before either commits: exactly the first wins, the
        other is 412 and leaves no blob behind."""
        first = self.put(b"first", ABSENT)
        second = self.put(b"second", ABSENT)
        self.runner.fire_all()
        self.assertEqual(self.successResultOf(first).etag, md5(b"first"))
        self.failureResultOf(second, errors.PreconditionFailed)
        current = self.engine.meta.get_object("bkt", "k")
        assert current is not None
        self.assertEqual(current.etag, md5(b"first"))
        self.assertEqual(sorted(self.engine.blobs.digests()), [current.sha256])

    def test_interleaved_compare_and_swap(self) -> None:
        """Two If-Match writers holding the same ETag: one replaces it, the other gets 412."""
        self.successResultOf(self.fire(self.put(b"v1", None)))
        swap = WriteCondition(if_match=f'"{md5(b"v1")}"')
        a = self.put(b"v2-a", swap)
        b = self.put(b"v2-b", swap)
        self.runner.fire_all()
        self.successResultOf(a)
        self.failureResultOf(b, errors.PreconditionFailed)
        current = self.engine.meta.get_object("bkt", "k")
        assert current is not None
        self.assertEqual(current.etag, md5(b"v2-a"))

    def test_deleted_meanwhile(self) -> None:
        """An If-Match write whose object is deleted before it commits is 409."""
        self.successResultOf(self.fire(self.put(b"v1", None)))
        deleted = self.engine.delete_object("bkt", "k")  # queued first: commits first
        d = self.put(b"v2", WriteCondition(if_match=md5(b"v1")))
        self.runner.fire_all()
        self.assertTrue(self.successResultOf(deleted))
        self.failureResultOf(d, errors.ConditionalRequestConflict)
        self.assertIsNone(self.engine.meta.get_object("bkt", "k"))

    def test_complete_upload_condition(self) -> None:
        """CompleteMultipartUpload with If-None-Match fails atomically if the key was taken
        after admission, and keeps the upload (and its parts) for a retry."""
        upload = Upload("bkt", "k", "u1", 1.0)
        self.engine.meta.create_upload(upload)
        body = stage(self.engine, b"part")
        part = Part("u1", 1, body.size, body.md5, blob_of(body), 1.0)
        self.successResultOf(self.fire(self.engine.put_part(body, upload, part)))

        def make_record(sha256: str, _checksum: str | None) -> ObjectRecord:
            return ObjectRecord("bkt", "k", 4, "x-1", sha256, 2.0, blobs=(part.blob,))

        rival = self.put(b"rival", None)  # queued first: commits first
        d = self.engine.complete_upload(upload, [part], make_record, condition=ABSENT)
        self.runner.fire_all()
        self.failureResultOf(d, errors.PreconditionFailed)
        self.successResultOf(rival)
        self.assertIsNotNone(self.engine.meta.get_upload("bkt", "k", "u1"))
        self.assertEqual(len(self.engine.meta.list_parts("u1", 0, 10)[0]), 1)
        retry = self.engine.complete_upload(upload, [part], make_record)
        self.runner.fire_all()
        self.assertEqual(self.successResultOf(retry).etag, "x-1")

    def fire(self, d: Deferred[T]) -> Deferred[T]:
        self.runner.fire_all()
        return d


# --------------------------------------------------------------------------------- HTTP
class HttpTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.runner = ManualRunner()
        self.h = Harness(self.mktemp(), runner=self.runner)
        self.h.create_bucket("bkt")

    def put(self, data: bytes, **headers: str) -> Response:
        return self.h.send(put_request("bkt", "k", data, headers=headers))

    def assertError(self, response: Response, status: int, code: str) -> dict[str, str]:
        self.assertEqual(response.status, status, response.body)
        error = {child.tag: child.text or "" for child in ET.fromstring(response.body)}
        self.assertEqual(error["Code"], code)
        return error

    def stored_etag(self) -> str | None:
        record = self.h.meta.get_object("bkt", "k")
        return record.etag if record is not None else None

    @given(st.data(), st.sampled_from(["plain", "aws-chunked"]))
    def test_racing_create_only_puts(self, data: st.DataObject, encoding: str) -> None:
        """Two If-None-Match PUTs of one key admitted before either commits (their disk work
        run in any interleaving): exactly one is 200, the other 412, and the object is the
        winner's; nothing stays staged."""
        runner = ManualRunner()
        h = Harness(self.mktemp(), runner=runner)
        h.create_bucket("bkt")
        bodies = [b"writer-a" * 100, b"writer-b" * 100]
        conns = [h.connect() for _ in bodies]
        for conn, body in zip(conns, bodies, strict=True):
            conn.feed(
                put_request("bkt", "k", body, headers={"If-None-Match": "*"}, encoding=encoding)
            )
        while runner.pending:
            index = data.draw(st.integers(0, len(runner.pending) - 1))
            runner.pending.insert(0, runner.pending.pop(index))
            runner.fire()
            h.pump()
        statuses = [conn.response().status for conn in conns]
        self.assertEqual(sorted(statuses), [200, 412])
        record = h.meta.get_object("bkt", "k")
        assert record is not None
        self.assertEqual(record.etag, md5(bodies[statuses.index(200)]))
        self.assertEqual(h.staging_files(), [])
        self.assertEqual(len(h.blob_files()), 1)

    def test_refused_before_the_body(self) -> None:
        """If-None-Match: * on an existing key is 412 from the headers alone: no body read."""
        self.assertEqual(self.put(b"v1").status, 200)
        raw = put_request("bkt", "k", b"x" * MiB, headers={"If-None-Match": "*"}, expect=True)
        head = raw[: raw.index(b"\r\n\r\n") + 4]
        conn = self.h.connect()
        conn.feed(head)
        self.assertError(conn.response(), 412, "PreconditionFailed")
        self.assertNotIn(b"100 Continue", conn.transport.value())
        self.assertEqual(self.h.blobs.staging_opened, 1)  # the first PUT's only
        self.assertEqual(self.stored_etag(), md5(b"v1"))

    def test_if_match(self) -> None:
        """If-Match with the current ETag replaces; a stale one is 412; no object is 404."""
        self.assertError(self.put(b"v1", **{"If-Match": '"0"'}), 404, "NoSuchKey")
        self.assertEqual(self.put(b"v1").status, 200)
        self.assertError(self.put(b"v2", **{"If-Match": '"0123"'}), 412, "PreconditionFailed")
        response = self.put(b"v2", **{"If-Match": f'"{md5(b"v1")}"'})
        self.assertEqual(response.status, 200)
        self.assertEqual(self.stored_etag(), md5(b"v2"))
        self.assertError(self.put(b"v3", **{"If-Match": md5(b"v1")}), 412, "PreconditionFailed")

    def test_unsupported_forms(self) -> None:
        """If-None-Match with an ETag, or both headers, are 501 NotImplemented."""
        self.assertError(self.put(b"v", **{"If-None-Match": '"abc"'}), 501, "NotImplemented")
        both = {"If-None-Match": "*", "If-Match": '"abc"'}
        self.assertError(self.put(b"v", **both), 501, "NotImplemented")
        self.assertIsNone(self.stored_etag())

    def test_complete_multipart_upload(self) -> None:
        """CompleteMultipartUpload honours If-None-Match and If-Match; a refused completion
        keeps the upload."""
        target = key_path("bkt", "k")
        created = self.h.send(signed_request("POST", target + "?uploads"))
        upload_id = ET.fromstring(created.body).findtext("{*}UploadId")
        part = put_request("bkt", "k", b"only part", query=f"?partNumber=1&uploadId={upload_id}")
        etag = self.h.send(part).header("etag")
        xml = (
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
            f"<ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
        ).encode()

        def complete(**headers: str) -> Response:
            raw = signed_request("POST", f"{target}?uploadId={upload_id}", xml, headers)
            return self.h.send(raw)

        self.assertEqual(self.put(b"existing").status, 200)
        self.assertError(complete(**{"If-None-Match": "*"}), 412, "PreconditionFailed")
        self.assertError(complete(**{"If-Match": '"ffff"'}), 412, "PreconditionFailed")
        self.assertEqual(self.stored_etag(), md5(b"existing"))
        response = complete(**{"If-Match": f'"{md5(b"existing")}"'})
        self.assertEqual(response.status, 200, response.body)
        self.assertEqual(self.stored_etag(), f"{md5(bytes.fromhex(md5(b'only part')))}-1")
        self.assertIsNone(self.h.meta.get_upload("bkt", "k", upload_id or ""))
