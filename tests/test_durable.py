"""Durability order of the blob store and durable helpers, and the pure path layout."""

from __future__ import annotations

import hashlib
import os

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from artifactd.interfaces import IBlobStore, IStagingFile
from artifactd.storage.blobs import FileBlobStore
from artifactd.storage.durable import OSFileSystem, durable_rename, durable_unlink
from artifactd.storage.layout import Layout, is_digest
from artifactd.testing import RecordingFileSystem

HEX = "0123456789abcdef"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStoreDurabilityTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.layout = Layout(os.path.abspath(self.mktemp()))
        self.fs = RecordingFileSystem()
        self.store = FileBlobStore(self.layout, self.fs)
        self.store.prepare()

    def test_interfaces(self) -> None:
        """FileBlobStore provides IBlobStore and its staging files provide IStagingFile."""
        self.assertTrue(verifyObject(IBlobStore, self.store))
        staging = self.store.open_staging()
        self.addCleanup(staging.discard)
        self.assertTrue(verifyObject(IStagingFile, staging))

    def test_sync_fsyncs_the_data(self) -> None:
        """sync() fsyncs the staging file's descriptor, and touches nothing else."""
        staging = self.store.open_staging()
        staging.write(b"payload")
        self.assertEqual(self.fs.calls, [])
        staging.sync()
        self.assertEqual(self.fs.operations(), ["fsync_fd"])
        with open(staging.path, "rb") as f:
            self.assertEqual(f.read(), b"payload")

    def test_commit_order(self) -> None:
        """commit does makedirs, replace, fsync_dir in that order, after the staging fsync."""
        data = b"some bytes"
        digest = sha256(data)
        staging = self.store.open_staging()
        staging.write(data)
        staging.sync()
        self.assertTrue(self.store.commit(staging, digest))
        target = self.layout.blob(digest)
        shard = os.path.dirname(target)
        self.assertEqual(
            self.fs.calls[1:],
            [
                ("makedirs", shard),
                ("fsync_dir", self.layout.blobs),  # the new shard directories are durable
                ("fsync_dir", os.path.dirname(shard)),
                ("replace", staging.path, target),
                ("fsync_dir", shard),
            ],
        )
        self.assertEqual(self.fs.operations()[0], "fsync_fd")
        with self.store.open_blob(digest) as f:
            self.assertEqual(f.read(), data)
        self.assertFalse(os.path.exists(staging.path))
        self.assertEqual(list(self.store.digests()), [digest])

    def test_commit_of_existing_blob_discards(self) -> None:
        """Committing already-stored content discards the staging file: stored once."""
        digest = sha256(b"same")
        for expected in (True, False):
            staging = self.store.open_staging()
            staging.write(b"same")
            staging.sync()
            self.fs.calls.clear()
            self.assertEqual(self.store.commit(staging, digest), expected)
        self.assertEqual(self.fs.operations(), ["unlink"])
        self.assertEqual(os.listdir(self.layout.staging), [])
        self.assertEqual(list(self.store.digests()), [digest])

    def test_delete_unlinks_then_fsyncs(self) -> None:
        """Deleting a blob unlinks the file and then fsyncs its directory."""
        digest = sha256(b"x")
        staging = self.store.open_staging()
        staging.write(b"x")
        staging.sync()
        self.store.commit(staging, digest)
        self.fs.calls.clear()
        self.store.delete(digest)
        target = self.layout.blob(digest)
        self.assertEqual(
            self.fs.calls, [("unlink", target), ("fsync_dir", os.path.dirname(target))]
        )
        self.assertFalse(self.store.exists(digest))

    def test_delete_absent_blob(self) -> None:
        """Deleting a blob that was never stored is a no-op, even if its shard never existed."""
        self.store.delete("ab" * 32)
        self.assertFalse(self.store.exists("ab" * 32))

    def test_discard_removes_staging(self) -> None:
        """discard() removes the staging file and may be called twice."""
        staging = self.store.open_staging()
        staging.write(b"abandoned")
        staging.discard()
        staging.discard()
        self.assertEqual(os.listdir(self.layout.staging), [])

    def test_clear_staging(self) -> None:
        """clear_staging removes and counts leftovers, then fsyncs the staging directory."""
        for _ in range(2):
            self.store.open_staging().write(b"left over")
        os.mkdir(os.path.join(self.layout.staging, "junk-dir"))
        self.fs.calls.clear()
        self.assertEqual(self.store.clear_staging(), 3)
        self.assertEqual(os.listdir(self.layout.staging), [])
        self.assertEqual(self.fs.calls, [("fsync_dir", self.layout.staging)])
        self.assertEqual(self.store.clear_staging(), 0)

    def test_digests_ignores_strays(self) -> None:
        """digests() lists only files named like a digest in the shard directories."""
        digest = sha256(b"d")
        staging = self.store.open_staging()
        staging.write(b"d")
        staging.sync()
        self.store.commit(staging, digest)
        shard = os.path.dirname(self.layout.blob(digest))
        with open(os.path.join(shard, "not-a-digest"), "wb"):
            pass
        self.assertEqual(list(self.store.digests()), [digest])


class DurableHelperTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        self.fs = RecordingFileSystem(OSFileSystem())

    def test_durable_unlink_order(self) -> None:
        """durable_unlink unlinks the file, then fsyncs its directory."""
        path = os.path.join(self.root, "f")
        with open(path, "wb"):
            pass
        durable_unlink(self.fs, path)
        self.assertEqual(self.fs.calls, [("unlink", path), ("fsync_dir", self.root)])
        self.assertFalse(os.path.exists(path))

    def test_durable_unlink_missing_file(self) -> None:
        """durable_unlink of a file that is already gone still succeeds."""
        durable_unlink(self.fs, os.path.join(self.root, "gone"))
        self.assertEqual(self.fs.operations(), ["unlink", "fsync_dir"])

    def test_durable_rename_order(self) -> None:
        """durable_rename creates the target directories (fsyncing each new one's parent), renames,
        then fsyncs the target directory."""
        src = os.path.join(self.root, "src")
        dst = os.path.join(self.root, "a", "b", "dst")
        with open(src, "wb") as f:
            f.write(b"x")
        durable_rename(self.fs, src, dst)
        parent = os.path.dirname(dst)
        self.assertEqual(
            self.fs.calls,
            [
                ("makedirs", parent),
                ("fsync_dir", self.root),
                ("fsync_dir", os.path.join(self.root, "a")),
                ("replace", src, dst),
                ("fsync_dir", parent),
            ],
        )
        with open(dst, "rb") as f:
            self.assertEqual(f.read(), b"x")


def _independently_a_digest(text: str) -> bool:
    return len(text) == 64 and all(c in HEX for c in text)


_almost_digests = st.one_of(
    st.text(),
    st.text(HEX, max_size=70),
    st.text(HEX.upper(), min_size=64, max_size=64),
    st.text(HEX, min_size=64, max_size=64).map(lambda d: d + "\n"),
    st.text(HEX, min_size=64, max_size=64).map(lambda d: "../" + d[3:]),
    st.tuples(
        st.text(HEX, min_size=64, max_size=64), st.integers(0, 63), st.characters(codec="utf-8")
    ).map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + 1 :]),
)


class LayoutTests(SynchronousTestCase):
    @given(_almost_digests)
    def test_rejects_non_digests(self, text: str) -> None:
        """Layout.blob raises ValueError for any text that is not 64 lowercase hex digits."""
        layout = Layout("/data")
        if _independently_a_digest(text):
            self.assertTrue(is_digest(text))
            self.assertEqual(layout.blob(text), f"/data/blobs/{text[:2]}/{text[2:4]}/{text}")
        else:
            self.assertFalse(is_digest(text))
            self.assertRaises(ValueError, layout.blob, text)

    @given(st.binary())
    def test_accepts_every_sha256(self, data: bytes) -> None:
        """Every real SHA-256 hex digest maps to blobs/ab/cd/<digest> under the root."""
        digest = sha256(data)
        path = Layout("/data").blob(digest)
        self.assertEqual(path, os.path.join("/data", "blobs", digest[:2], digest[2:4], digest))
        self.assertEqual(os.path.normpath(path), path)
