"""Hypothesis strategies for artifactd's inputs, and the project's hypothesis profiles.

Importing this module registers the profiles and loads one: ``HYPOTHESIS_PROFILE=ci`` selects the
thorough one, anything else (or nothing) the quick default.  Every profile has ``deadline=None``:
the tests are synchronous but touch the disk, so wall-clock time says nothing about correctness.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from artifactd import errors
from artifactd.names import MAX_KEY_BYTES, MAX_METADATA_BYTES, check_bucket_name, metadata_size

_HEALTH = [
    HealthCheck.too_slow,
    # The metadata tests run one @given method against both MemoryKV and LevelDB through a mixin;
    # sharing examples between the two executors is what we want.
    HealthCheck.differing_executors,
]
settings.register_profile(
    "default", deadline=None, max_examples=50, suppress_health_check=_HEALTH, print_blob=True
)
settings.register_profile(
    "ci", deadline=None, max_examples=500, suppress_health_check=_HEALTH, print_blob=True
)
settings.load_profile("ci" if os.environ.get("HYPOTHESIS_PROFILE") == "ci" else "default")


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


# Pieces that make keys interesting: separators, doubled separators, characters that URL and
# SigV4 encoders treat specially, multi-byte UTF-8 (2, 3 and 4 bytes), and ones that sort around
# '/' (0x2f) in byte order.
_KEY_PIECES = [
    "a",
    "b",
    "z",
    "0",
    "/",
    "//",
    " ",
    "+",
    "%",
    "%2F",
    "-",
    ".",
    "~",
    "*",
    "=",
    "&",
    "?",
    "#",
    "é",
    "ß",
    "日本",
    "\U0001f600",
    "\ufffd",
]


def keys(*, controls: bool = False, max_bytes: int = MAX_KEY_BYTES) -> st.SearchStrategy[str]:
    """Valid S3 object keys: non-empty text of at most ``max_bytes`` UTF-8 bytes, never a lone
    surrogate, rich in ``/``, ``//``, spaces, ``+`` and ``%``.

    NUL is never produced (artifactd refuses it: it would make key encodings ambiguous). Control
    characters (``\\x01``-``\\x1f``, ``\\x7f``-``\\x9f``) are left out unless ``controls``:
    S3 accepts them but XML 1.0 cannot carry most of them, so they only suit storage-level tests.
    """
    any_char = (
        # every code point UTF-8 can encode (no surrogates) but NUL, which artifactd refuses
        st.characters(codec="utf-8", exclude_characters="\x00")
        if controls
        else st.characters(codec="utf-8", exclude_categories=["Cc"])
    )
    structured = st.lists(
        st.sampled_from(_KEY_PIECES) | st.text(any_char, min_size=1, max_size=3),
        min_size=1,
        max_size=12,
    ).map("".join)
    free = st.text(any_char, min_size=1, max_size=64)
    # Near the 1024-byte limit, with multi-byte characters on the boundary.
    long = st.builds(
        lambda filler, tail: filler * ((max_bytes - utf8_len(tail)) // utf8_len(filler)) + tail,
        st.sampled_from(["a", "/", "é", "日", "\U0001f600"]),
        st.sampled_from(["", "/", "x", "é", "日"]),
    )
    return (structured | free | long).filter(lambda k: 0 < utf8_len(k) <= max_bytes)


_LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)


def _valid_bucket_name(name: str) -> bool:
    try:
        check_bucket_name(name)
    except errors.S3Error:
        return False
    return True


def bucket_names() -> st.SearchStrategy[str]:
    """Bucket names that ``artifactd.names.check_bucket_name`` accepts (3-63 characters of
    ``a-z0-9.-``, dot- and dash-separated labels, no IP addresses or reserved affixes)."""
    labels = st.lists(st.tuples(st.sampled_from(["-", ".", "--"]), _LABEL), max_size=4)
    return (
        st.builds(lambda first, rest: first + "".join(s + w for s, w in rest), _LABEL, labels)
        .map(lambda name: name if len(name) >= 3 else name + "b" * (3 - len(name)))
        .map(lambda name: name[:63].rstrip(".-"))
        .filter(_valid_bucket_name)
    )


_META_NAME = st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,19}\Z")
# Printable ASCII without surrounding whitespace: what survives an HTTP header unchanged.
_META_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(
    str.strip
)


def metadata() -> st.SearchStrategy[dict[str, str]]:
    """User metadata (``x-amz-meta-*`` without the prefix): lower-case names, header-safe values,
    within S3's 2 KiB total."""
    return st.dictionaries(_META_NAME, _META_VALUE, max_size=6).filter(
        lambda d: metadata_size(list(d.items())) <= MAX_METADATA_BYTES
    )


def bodies(max_size: int = 2048) -> st.SearchStrategy[bytes]:
    """Object bodies: small binary strings, often empty or repeated so content is shared."""
    return st.sampled_from([b"", b"x", b"hello\n"]) | st.binary(max_size=max_size)
