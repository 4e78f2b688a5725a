"""The bounded cache of artifactd.lru: never a wrong value, never over its bound."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from artifactd.lru import LRU


def by_length(key: str, value: bytes) -> int:
    return len(value)


_DIGESTS = st.sampled_from("abcdef")
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), _DIGESTS, st.integers(0, 12)),
        st.tuples(st.just("get"), _DIGESTS, st.just(0)),
        st.tuples(st.just("discard"), _DIGESTS, st.just(0)),
    ),
    max_size=40,
)


class LRUTests(SynchronousTestCase):
    @given(max_bytes=st.integers(0, 30), ops=_OPS)
    def test_bounded_and_never_wrong(self, max_bytes: int, ops: list[tuple[str, str, int]]) -> None:
        """Whatever the gets, adds and discards: a key gives the value first added for it or
        nothing; a discarded key gives nothing; the weight kept never exceeds the bound; the value
        just added or read (if it fits) is kept."""
        recent: LRU[str, bytes] = LRU(max_bytes, by_length)
        first: dict[str, bytes] = {}
        for op, digest, length in ops:
            if op == "add":
                data = first.setdefault(digest, digest.encode() * length)
                recent.add(digest, data)
                if len(data) <= max_bytes:
                    self.assertEqual(recent.get(digest), data)
            elif op == "get":
                got = recent.get(digest)
                if got is not None:
                    self.assertEqual(got, first[digest])
            else:
                recent.discard(digest)
                self.assertIsNone(recent.get(digest))
                first.pop(digest, None)
            self.assertLessEqual(recent.weight, max_bytes)
        kept = [d for d in "abcdef" if recent.get(d) is not None]
        self.assertEqual(recent.weight, sum(len(first[d]) for d in kept))
        self.assertEqual(len(recent), len(kept))

    def test_least_recently_read_goes_first(self) -> None:
        recent: LRU[str, bytes] = LRU(6, by_length)
        recent.add("a", b"aa")
        recent.add("b", b"bb")
        recent.add("c", b"cc")
        self.assertEqual(recent.get("a"), b"aa")  # b is now the least recently read
        recent.add("d", b"dd")
        self.assertEqual([d for d in "abcd" if recent.get(d) is not None], ["a", "c", "d"])
        recent.add("big", b"x" * 7)  # larger than the bound: not kept, nothing dropped
        self.assertIsNone(recent.get("big"))
        self.assertEqual(recent.weight, 6)

    def test_weights_by_the_function(self) -> None:
        lru: LRU[str, int] = LRU(3, lambda key, value: value)
        lru.add("two", 2)
        lru.add("one", 1)
        lru.add("again", 1)  # 4 > 3: "two" goes
        self.assertEqual(
            [k for k in ("two", "one", "again") if lru.get(k) is not None], ["one", "again"]
        )
        self.assertEqual(lru.weight, 2)
        lru.add("one", 1)  # already kept: nothing changes
        self.assertEqual((len(lru), lru.weight), (2, 2))
