# twisted.trial's assertion methods are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""Tests for :mod:`artifactd.integrity` (S3's flexible-checksum rules) and for the checksum fields
of the stored records."""

from __future__ import annotations

import base64
import hashlib
import json
import zlib

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from artifactd import errors, integrity
from artifactd.checksums import ALGORITHMS
from artifactd.records import BlobRef, ChecksumValue, ObjectRecord, Part, Upload
from artifactd.storage import keys
from tests import strategies  # noqa: F401  (registers the hypothesis profiles)

SORTED = sorted(ALGORITHMS)


# ---------------------------------------------------------------- an independent reference
def _table(poly: int) -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLES = {
    "crc32c": (_table(0x82F63B78), 0xFFFFFFFF, 4),
    "crc64nvme": (_table(0x9A6C9329AC4BC9B5), 0xFFFFFFFFFFFFFFFF, 8),
}


def reference_digest(algorithm: str, data: bytes) -> bytes:
    """The raw digest, computed without awscrt (table-driven CRCs, zlib, hashlib)."""
    if algorithm in _TABLES:
        table, mask, size = _TABLES[algorithm]
        crc = mask
        for byte in data:
            crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        return (crc ^ mask).to_bytes(size, "big")
    if algorithm == "crc32":
        return zlib.crc32(data).to_bytes(4, "big")
    return hashlib.new(algorithm, data).digest()


def reference(algorithm: str, data: bytes) -> str:
    return base64.b64encode(reference_digest(algorithm, data)).decode()


def upload(algorithm: str | None = None, checksum_type: str | None = None) -> Upload:
    return Upload("bkt", "k", "u1", 1.0, checksum_algorithm=algorithm, checksum_type=checksum_type)


def part(number: int, data: bytes, algorithm: str | None) -> Part:
    checksum = ChecksumValue(algorithm, reference(algorithm, data)) if algorithm else None
    etag = hashlib.md5(data).hexdigest()
    digest = hashlib.sha256(data).hexdigest()
    return Part("u1", number, len(data), etag, BlobRef(digest, len(data)), 2.0, checksum)


# --------------------------------------------------------------------------- single uploads
class RequestChecksumTests(SynchronousTestCase):
    def assertInvalidRequest(self, message: str, *args: object) -> None:
        e = self.assertRaises(errors.InvalidRequest, integrity.request_checksum, *args)
        self.assertEqual(e.message, message)

    @given(st.sampled_from(SORTED), st.binary(max_size=64))
    def test_header_value(self, algorithm: str, data: bytes) -> None:
        """A well-formed x-amz-checksum-<algorithm> header gives its algorithm and value."""
        value = reference(algorithm, data)
        headers = {f"x-amz-checksum-{algorithm}": value}
        self.assertEqual(integrity.request_checksum(headers, None), (algorithm, value))
        headers["x-amz-sdk-checksum-algorithm"] = algorithm.upper()
        self.assertEqual(integrity.request_checksum(headers, None), (algorithm, value))

    def test_trailer_and_sdk_header(self) -> None:
        """A declared trailer or a bare x-amz-sdk-checksum-algorithm names the algorithm only."""
        self.assertEqual(integrity.request_checksum({}, "crc32"), ("crc32", None))
        sdk = {"x-amz-sdk-checksum-algorithm": "CRC32C"}
        self.assertEqual(integrity.request_checksum(sdk, None), ("crc32c", None))
        self.assertEqual(integrity.request_checksum({}, None), (None, None))
        control = {"x-amz-checksum-mode": "ENABLED", "x-amz-checksum-type": "COMPOSITE"}
        self.assertEqual(integrity.request_checksum(control, None), (None, None))

    @given(st.sampled_from(SORTED), st.binary(max_size=40))
    def test_malformed_value(self, algorithm: str, raw: bytes) -> None:
        """A value that is not base64 of exactly one digest is InvalidRequest, naming the header."""
        size = integrity.DIGEST_SIZES[algorithm]
        values = [base64.b64encode(raw).decode() + "!", "not base64", ""]
        if len(raw) != size:
            values.append(base64.b64encode(raw).decode())
        for value in values:
            self.assertInvalidRequest(
                f"Value for x-amz-checksum-{algorithm} header is invalid.",
                {f"x-amz-checksum-{algorithm}": value},
                None,
            )

    def test_inconsistent(self) -> None:
        """Two checksums, or an sdk algorithm naming another or no known one, are refused."""
        crc = {"x-amz-checksum-crc32": reference("crc32", b"x")}
        sha = {"x-amz-checksum-sha1": reference("sha1", b"x")}
        multiple = (
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        )
        self.assertInvalidRequest(multiple, {**crc, **sha}, None)
        self.assertInvalidRequest(multiple, crc, "sha256")
        sdk_invalid = "Value for x-amz-sdk-checksum-algorithm header is invalid."
        self.assertInvalidRequest(
            sdk_invalid, {**crc, "x-amz-sdk-checksum-algorithm": "SHA1"}, None
        )
        self.assertInvalidRequest(sdk_invalid, {"x-amz-sdk-checksum-algorithm": "crc99"}, None)
        self.assertInvalidRequest(sdk_invalid, {"x-amz-sdk-checksum-algorithm": "SHA1"}, "crc32")

    def test_unimplemented_algorithms(self) -> None:
        """Algorithms S3 defines that artifactd lacks are 501, never silently unverified."""
        for headers in (
            {"x-amz-checksum-sha512": "AAAA"},
            {"x-amz-sdk-checksum-algorithm": "XXHASH64"},
            {"x-amz-checksum-md5": "AAAA"},
        ):
            self.assertRaises(
                errors.NotImplementedError_, integrity.request_checksum, headers, None
            )

    def test_upload_part_rules(self) -> None:
        """A part must use its upload's algorithm; a COMPOSITE part must carry it, a FULL_OBJECT
        part without one has it computed; an upload without one takes anything."""
        crc = {"x-amz-checksum-crc32": reference("crc32", b"x")}
        composite = upload("crc32", integrity.COMPOSITE)
        full = upload("crc32", integrity.FULL_OBJECT)
        self.assertEqual(integrity.request_checksum(crc, None, composite)[0], "crc32")
        self.assertEqual(integrity.request_checksum({}, None, full), ("crc32", None))
        self.assertInvalidRequest(
            "Checksum Type mismatch occurred, expected checksum Type: crc32, actual checksum"
            " Type: null",
            {},
            None,
            composite,
        )
        for up in (composite, full):
            self.assertInvalidRequest(
                "Checksum Type mismatch occurred, expected checksum Type: crc32, actual checksum"
                " Type: sha256",
                {},
                "sha256",
                up,
            )
        self.assertEqual(integrity.request_checksum(crc, None, upload())[0], "crc32")
        self.assertEqual(integrity.request_checksum({}, None, upload()), (None, None))

    def test_trailer_value(self) -> None:
        """A malformed trailer value is InvalidRequest naming the trailing header."""
        integrity.check_trailer_value("crc32", reference("crc32", b""))
        e = self.assertRaises(errors.InvalidRequest, integrity.check_trailer_value, "crc32", "x")
        self.assertEqual(e.message, "Value for x-amz-checksum-crc32 trailing header is invalid.")


# ------------------------------------------------------------------------------ multipart
class UploadChecksumTests(SynchronousTestCase):
    @given(
        st.sampled_from(SORTED),
        st.sampled_from([None, "COMPOSITE", "FULL_OBJECT", "composite"]),
    )
    def test_types(self, algorithm: str, asked: str | None) -> None:
        """The default type is FULL_OBJECT for CRC64NVME and COMPOSITE otherwise; SHA is
        COMPOSITE only, CRC64NVME FULL_OBJECT only, CRC32/CRC32C either."""
        headers = {"x-amz-checksum-algorithm": algorithm.upper()}
        if asked is not None:
            headers["x-amz-checksum-type"] = asked
        wanted = (
            asked.upper() if asked else ("FULL_OBJECT" if algorithm == "crc64nvme" else "COMPOSITE")
        )
        allowed = {
            "crc32": {"COMPOSITE", "FULL_OBJECT"},
            "crc32c": {"COMPOSITE", "FULL_OBJECT"},
            "crc64nvme": {"FULL_OBJECT"},
            "sha1": {"COMPOSITE"},
            "sha256": {"COMPOSITE"},
        }[algorithm]
        if wanted in allowed:
            self.assertEqual(integrity.upload_checksum(headers), (algorithm, wanted))
        else:
            e = self.assertRaises(errors.InvalidRequest, integrity.upload_checksum, headers)
            self.assertEqual(
                e.message,
                f"The {wanted} checksum type cannot be used with the {algorithm} checksum"
                " algorithm.",
            )

    def test_invalid(self) -> None:
        """No algorithm gives no checksum; a type alone, an unknown type or algorithm are
        InvalidRequest; an unimplemented S3 algorithm is 501."""
        self.assertEqual(integrity.upload_checksum({}), (None, None))
        for headers in (
            {"x-amz-checksum-type": "COMPOSITE"},
            {"x-amz-checksum-algorithm": "CRC32", "x-amz-checksum-type": "PARTIAL"},
            {"x-amz-checksum-algorithm": "ADLER32"},
        ):
            self.assertRaises(errors.InvalidRequest, integrity.upload_checksum, headers)
        self.assertRaises(
            errors.NotImplementedError_,
            integrity.upload_checksum,
            {"x-amz-checksum-algorithm": "SHA512"},
        )

    @given(
        st.sampled_from(["crc32", "crc32c", "sha1", "sha256"]),
        st.lists(st.binary(), min_size=1, max_size=6),
    )
    def test_composite_value(self, algorithm: str, datas: list[bytes]) -> None:
        """COMPOSITE = the checksum of the concatenated binary part checksums, then -N."""
        parts = [part(n, data, algorithm) for n, data in enumerate(datas, 1)]
        joined = b"".join(reference_digest(algorithm, data) for data in datas)
        want = f"{reference(algorithm, joined)}-{len(datas)}"
        values = [p.checksum.value for p in parts if p.checksum]
        self.assertEqual(integrity.composite(algorithm, values), want)
        plan = integrity.plan_completion(upload(algorithm, "COMPOSITE"), parts, {})
        self.assertEqual(plan.full_object_algorithm, None)
        self.assertEqual(plan.finish(None), ChecksumValue(algorithm, want))
        self.assertEqual(plan.part_values, tuple(values))

    @given(
        st.sampled_from(["crc32", "crc32c", "crc64nvme"]),
        st.lists(st.binary(), min_size=1, max_size=6),
    )
    def test_full_object_value(self, algorithm: str, datas: list[bytes]) -> None:
        """FULL_OBJECT takes the whole-content checksum the engine computes, and checks the one
        the client sent against it."""
        parts = [part(n, data, algorithm) for n, data in enumerate(datas, 1)]
        whole = reference(algorithm, b"".join(datas))
        plan = integrity.plan_completion(upload(algorithm, "FULL_OBJECT"), parts, {})
        self.assertEqual(plan.full_object_algorithm, algorithm)
        self.assertEqual(plan.finish(whole), ChecksumValue(algorithm, whole))
        header = {f"x-amz-checksum-{algorithm}": whole}
        sent = integrity.plan_completion(upload(algorithm, "FULL_OBJECT"), parts, header)
        self.assertEqual(sent.finish(whole), ChecksumValue(algorithm, whole))
        other = reference(algorithm, b"".join(datas) + b"!")
        wrong = integrity.plan_completion(
            upload(algorithm, "FULL_OBJECT"), parts, {f"x-amz-checksum-{algorithm}": other}
        )
        e = self.assertRaises(errors.BadDigest, wrong.finish, whole)
        self.assertEqual(
            e.message, f"The {algorithm} you specified did not match the calculated checksum."
        )

    def test_composite_header(self) -> None:
        """A COMPOSITE object checksum sent on Complete may omit -N; a wrong value or count is
        BadDigest, a malformed one InvalidRequest, another algorithm a type mismatch."""
        parts = [part(1, b"a", "sha256"), part(2, b"b", "sha256")]
        up = upload("sha256", "COMPOSITE")
        value = integrity.composite("sha256", [p.checksum.value for p in parts if p.checksum])
        digest = value.rsplit("-", 1)[0]
        for sent in (value, digest):
            plan = integrity.plan_completion(up, parts, {"x-amz-checksum-sha256": sent})
            self.assertEqual(plan.finish(None), ChecksumValue("sha256", value))
        for sent in (f"{digest}-3", reference("sha256", b"zz")):
            self.assertRaises(
                errors.BadDigest,
                integrity.plan_completion,
                up,
                parts,
                {"x-amz-checksum-sha256": sent},
            )
        for sent in (f"{digest}-a", "nope", f"{digest}-"):
            e = self.assertRaises(
                errors.InvalidRequest,
                integrity.plan_completion,
                up,
                parts,
                {"x-amz-checksum-sha256": sent},
            )
            self.assertEqual(e.message, "Value for x-amz-checksum-sha256 header is invalid.")
        self.assertRaises(
            errors.InvalidRequest,
            integrity.plan_completion,
            up,
            parts,
            {"x-amz-checksum-crc32": reference("crc32", b"")},
        )
        e = self.assertRaises(
            errors.InvalidRequest,
            integrity.plan_completion,
            up,
            parts,
            {"x-amz-checksum-type": "FULL_OBJECT"},
        )
        self.assertEqual(
            e.message,
            "The upload was created using the COMPOSITE checksum mode. The complete request must"
            " use the same checksum mode.",
        )

    def test_no_algorithm(self) -> None:
        """An upload that declared no algorithm stores no object checksum, whatever is sent."""
        parts = [part(1, b"a", "crc32")]
        plan = integrity.plan_completion(
            upload(), parts, {"x-amz-checksum-crc32": reference("crc32", b"zz")}
        )
        self.assertIsNone(plan.finish(None))
        self.assertIsNone(plan.full_object_algorithm)

    def test_listed_part(self) -> None:
        """Listed part checksums must equal the stored ones (InvalidPart), be well formed and
        single (InvalidArgument), and be present for a COMPOSITE upload (InvalidRequest)."""
        composite = upload("crc32", "COMPOSITE")
        stored = part(3, b"data", "crc32")
        assert stored.checksum is not None
        integrity.check_listed_part(composite, stored, {"ChecksumCRC32": stored.checksum.value})
        integrity.check_listed_part(upload("crc32", "FULL_OBJECT"), stored, {})
        integrity.check_listed_part(upload(), part(3, b"data", None), {})
        e = self.assertRaises(
            errors.InvalidPart,
            integrity.check_listed_part,
            composite,
            stored,
            {"ChecksumCRC32": reference("crc32", b"other")},
        )
        self.assertEqual(e.extra, {"UploadId": "u1", "PartNumber": "3", "ETag": stored.etag})
        self.assertRaises(
            errors.InvalidPart,
            integrity.check_listed_part,
            composite,
            stored,
            {"ChecksumSHA1": reference("sha1", b"data")},
        )
        e = self.assertRaises(
            errors.InvalidArgument,
            integrity.check_listed_part,
            composite,
            stored,
            {"ChecksumCRC32": "bad!"},
        )
        self.assertEqual(e.message, "Invalid Base64 or multiple checksums present in request")
        self.assertEqual(e.extra, {"ArgumentName": "Checksum", "ArgumentValue": "CRC32:bad!;"})
        e = self.assertRaises(
            errors.InvalidRequest, integrity.check_listed_part, composite, stored, {}
        )
        self.assertEqual(
            e.message,
            "The upload was created using a crc32 checksum. The complete request must include"
            " the checksum for each part. It was missing for part 3 in the request.",
        )


# ------------------------------------------------------------------------------ responses
class ResponseTests(SynchronousTestCase):
    def test_object_headers(self) -> None:
        """The stored checksum and its type; a part's own checksum for partNumber; nothing when
        none is stored or the part does not exist."""
        plain = ObjectRecord("b", "k", 1, "e", "s", 1.0)
        self.assertEqual(integrity.object_headers(plain), [])
        single = ObjectRecord(
            "b",
            "k",
            1,
            "e",
            "s",
            1.0,
            checksum=ChecksumValue("sha1", "V"),
            checksum_type="FULL_OBJECT",
        )
        self.assertEqual(
            integrity.object_headers(single),
            [("x-amz-checksum-sha1", "V"), ("x-amz-checksum-type", "FULL_OBJECT")],
        )
        multi = ObjectRecord(
            "b",
            "k",
            2,
            "e-2",
            "s",
            1.0,
            parts_count=2,
            checksum=ChecksumValue("crc32", "C-2"),
            checksum_type="COMPOSITE",
            part_checksums=("P1", "P2"),
        )
        self.assertEqual(integrity.object_headers(multi)[0], ("x-amz-checksum-crc32", "C-2"))
        self.assertEqual(
            integrity.object_headers(multi, 2),
            [("x-amz-checksum-crc32", "P2"), ("x-amz-checksum-type", "COMPOSITE")],
        )
        self.assertEqual(integrity.object_headers(multi, 3), [])

    def test_mode(self) -> None:
        """Only ENABLED (any case) turns checksum mode on."""
        self.assertTrue(integrity.mode_enabled("ENABLED"))
        self.assertTrue(integrity.mode_enabled(" enabled"))
        self.assertFalse(integrity.mode_enabled(None))
        self.assertFalse(integrity.mode_enabled("DISABLED"))


# -------------------------------------------------------------------------------- storage
checksums = st.one_of(
    st.none(),
    st.builds(ChecksumValue, st.sampled_from(SORTED), st.text(max_size=20)),
)


class RecordCodecTests(SynchronousTestCase):
    @given(
        checksums,
        st.sampled_from([None, "COMPOSITE", "FULL_OBJECT"]),
        st.lists(st.text(max_size=12), max_size=4),
    )
    def test_object_round_trip(
        self, checksum: ChecksumValue | None, checksum_type: str | None, part_values: list[str]
    ) -> None:
        """An object's checksum, type and part checksums survive encode/decode."""
        record = ObjectRecord(
            "b",
            "k",
            3,
            "e",
            "s",
            1.5,
            checksum=checksum,
            checksum_type=checksum_type,
            part_checksums=tuple(part_values),
        )
        self.assertEqual(keys.decode_object(keys.encode_object(record)), record)

    @given(
        checksums, st.sampled_from([None, "crc32", "sha256"]), st.sampled_from([None, "COMPOSITE"])
    )
    def test_upload_and_part_round_trip(
        self, checksum: ChecksumValue | None, algorithm: str | None, checksum_type: str | None
    ) -> None:
        """Uploads keep their declared algorithm and type, parts their checksum."""
        up = Upload("b", "k", "u", 1.0, checksum_algorithm=algorithm, checksum_type=checksum_type)
        self.assertEqual(keys.decode_upload(keys.encode_upload(up)), up)
        p = Part("u", 7, 3, "e", BlobRef("d", 3), 2.0, checksum)
        self.assertEqual(keys.decode_part(keys.encode_part(p)), p)

    def test_old_records_decode(self) -> None:
        """Records written before checksums were stored decode with no checksum."""
        record = ObjectRecord("b", "k", 3, "e", "s", 1.5)
        raw = json.loads(keys.encode_object(record))
        for name in ("ck", "ckt", "pck"):
            del raw[name]
        self.assertEqual(keys.decode_object(json.dumps(raw).encode()), record)
        up = Upload("b", "k", "u", 1.0)
        raw = json.loads(keys.encode_upload(up))
        del raw["cka"], raw["ckt"]
        self.assertEqual(keys.decode_upload(json.dumps(raw).encode()), up)
        p = Part("u", 7, 3, "e", BlobRef("d", 3), 2.0)
        raw = json.loads(keys.encode_part(p))
        del raw["ck"]
        self.assertEqual(keys.decode_part(json.dumps(raw).encode()), p)
