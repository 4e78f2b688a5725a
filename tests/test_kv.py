"""LevelDBKV options that the metadata store tests (which use the defaults) do not cover."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from artifactd.storage.kv import LevelDBKV


class LevelDBKVSyncTests(SynchronousTestCase):
    def test_unsynced_writes_round_trip(self) -> None:
        """With ``sync=False`` writes, deletes and scans behave as with the default, and what was
        written is there after closing and reopening the database (with the default)."""
        path = self.mktemp()
        kv = LevelDBKV(path, sync=False)
        kv.write({b"a/1": b"one", b"a/2": b"two", b"b/1": b"other"}, set())
        kv.write({b"a/3": b"three"}, {b"a/2"})
        self.assertEqual(kv.get(b"a/1"), b"one")
        self.assertIsNone(kv.get(b"a/2"))
        self.assertEqual(list(kv.scan(b"a/")), [(b"a/1", b"one"), (b"a/3", b"three")])
        with kv.snapshot() as reader:
            self.assertEqual(reader.get(b"b/1"), b"other")
        kv.close()

        reopened = LevelDBKV(path)
        self.addCleanup(reopened.close)
        self.assertEqual(
            list(reopened.scan(b"")), [(b"a/1", b"one"), (b"a/3", b"three"), (b"b/1", b"other")]
        )

    def test_sync_is_keyword_only(self) -> None:
        """``sync`` cannot be passed by position, so no caller turns durability off by accident."""
        with self.assertRaises(TypeError):
            LevelDBKV(self.mktemp(), False)  # type: ignore[call-arg]
