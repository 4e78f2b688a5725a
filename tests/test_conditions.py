# twisted.trial's assertion methods are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""Conditional headers (:mod:`artifactd.http.conditions`) against a reference model of RFC 7232
§6 as the S3 GetObject reference words it, over generated ETag lists and HTTP-dates."""

from __future__ import annotations

import datetime
import email.utils
import time

from attrs import frozen
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from artifactd import errors
from artifactd.http.conditions import (
    Conditions,
    check_copy_source,
    check_read,
    etag_matches,
    parse_http_date,
)
from tests import strategies  # noqa: F401  (registers the hypothesis profiles)

ETAG = "0cc175b9c0f1b6a831c399e269772661"
MTIME = 1_700_000_000.25  # a stored Last-Modified with a fraction, as the clock gives it
NOW = 1_700_000_600.0

# ------------------------------------------------------------------ generated headers
etags = st.sampled_from([ETAG, "92eb5ffee6ae2fec3ad71c777531578f", ETAG + "-2", "x"])


@frozen
class Tag:
    """One entry of an If-Match / If-None-Match list, as structure."""

    opaque: str
    form: str  # "quoted", "bare", "weak", "star"

    def render(self) -> str:
        return {
            "quoted": f'"{self.opaque}"',
            "bare": self.opaque,
            "weak": f'W/"{self.opaque}"',
            "star": "*",
        }[self.form]


tags = st.builds(Tag, etags, st.sampled_from(["quoted", "quoted", "bare", "weak", "star"]))
tag_lists = st.lists(tags, min_size=1, max_size=3)


@frozen
class Date:
    """An If-(Un)Modified-Since value: seconds in one HTTP-date form, or garbage."""

    seconds: int | None  # None: not a date
    form: str  # "imf", "rfc850", "asctime", "garbage"

    def render(self) -> str:
        if self.seconds is None:
            return self.form
        dt = datetime.datetime.fromtimestamp(self.seconds, tz=datetime.UTC)
        if self.form == "imf":
            return email.utils.format_datetime(dt, usegmt=True)
        if self.form == "rfc850":
            return dt.strftime("%A, %d-%b-%y %H:%M:%S GMT")
        return f"{dt:%a %b} {dt.day:2d} {dt:%H:%M:%S %Y}"


_AROUND = [int(MTIME) - 1, int(MTIME), int(MTIME) + 1, int(NOW), int(NOW) + 1, int(NOW) + 86400]
dates = st.builds(
    Date,
    st.sampled_from(_AROUND) | st.integers(int(MTIME) - 10**6, int(NOW) + 10**6),
    st.sampled_from(["imf", "rfc850", "asctime"]),
) | st.builds(Date, st.none(), st.sampled_from(["", "yesterday", "2023-11-14T22:13:20Z", "0"]))


# ------------------------------------------------------------------ the model
def listed(entries: list[Tag], etag: str, *, weak: bool) -> bool:
    for tag in entries:
        if tag.form == "star":
            return True
        if tag.form == "weak" and not weak:
            continue
        if tag.opaque == etag:
            return True
    return False


def model(
    etag: str,
    mtime: float,
    now: float,
    if_match: list[Tag] | None,
    if_none_match: list[Tag] | None,
    modified: Date | None,
    unmodified: Date | None,
) -> int:
    """The status S3 answers a GET with: 412, 304 or 200."""
    seconds = int(mtime)
    if if_match is not None:
        if not listed(if_match, etag, weak=False):
            return 412
    elif unmodified is not None and unmodified.seconds is not None and seconds > unmodified.seconds:
        return 412
    if if_none_match is not None:
        if listed(if_none_match, etag, weak=True):
            return 304
    else:
        since = None if modified is None else modified.seconds
        if since is not None and since <= now and seconds <= since:  # a future date is invalid
            return 304
    return 200


def observed(conditions: Conditions, *, copy: bool = False) -> int:
    check = check_copy_source if copy else check_read
    try:
        check(conditions, ETAG, MTIME, now=NOW)
    except errors.PreconditionFailed:
        return 412
    except errors.NotModified:
        return 304
    return 200


def render_list(entries: list[Tag] | None) -> str | None:
    return None if entries is None else ", ".join(t.render() for t in entries)


class CheckReadTests(SynchronousTestCase):
    @settings(max_examples=1000)  # pure and fast: cover the combinations densely
    @given(
        st.none() | tag_lists,
        st.none() | tag_lists,
        st.none() | dates,
        st.none() | dates,
    )
    def test_matches_model(
        self,
        if_match: list[Tag] | None,
        if_none_match: list[Tag] | None,
        modified: Date | None,
        unmodified: Date | None,
    ) -> None:
        """Every combination of the four headers gives the status of the RFC 7232 model."""
        conditions = Conditions(
            render_list(if_match),
            render_list(if_none_match),
            None if modified is None else modified.render(),
            None if unmodified is None else unmodified.render(),
        )
        expected = model(ETAG, MTIME, NOW, if_match, if_none_match, modified, unmodified)
        self.assertEqual(observed(conditions), expected, conditions)
        self.assertEqual(observed(conditions, copy=True), 412 if expected != 200 else 200)

    def test_if_match_true_beats_unmodified_since(self) -> None:
        """S3: If-Match true and If-Unmodified-Since false is 200."""
        past = email.utils.formatdate(MTIME - 3600, usegmt=True)
        self.assertEqual(observed(Conditions(if_match=f'"{ETAG}"', if_unmodified_since=past)), 200)
        self.assertEqual(observed(Conditions(if_unmodified_since=past)), 412)

    def test_if_none_match_false_beats_modified_since(self) -> None:
        """S3: If-None-Match false (the ETag matches) and If-Modified-Since true is 304."""
        past = email.utils.formatdate(MTIME - 3600, usegmt=True)
        conditions = Conditions(if_none_match=f'"{ETAG}"', if_modified_since=past)
        self.assertEqual(observed(conditions), 304)
        self.assertEqual(observed(Conditions(if_modified_since=past)), 200)

    def test_precondition_failed_beats_not_modified(self) -> None:
        """A failing If-Match is 412 even when If-None-Match would give 304."""
        conditions = Conditions(if_match='"other"', if_none_match=f'"{ETAG}"')
        self.assertEqual(observed(conditions), 412)

    def test_error_names_the_condition(self) -> None:
        """The 412 document's Condition element names the header that failed."""
        for conditions, name in [
            (Conditions(if_match='"other"'), "If-Match"),
            (
                Conditions(if_unmodified_since="Mon, 01 Jan 2001 00:00:00 GMT"),
                "If-Unmodified-Since",
            ),
        ]:
            e = self.assertRaises(errors.PreconditionFailed, check_read, conditions, ETAG, MTIME)
            self.assertEqual(e.extra, {"Condition": name})

    def test_same_second_is_not_modified(self) -> None:
        """Last-Modified has whole seconds: a date equal to its second is 'not modified since'."""
        same = email.utils.formatdate(int(MTIME), usegmt=True)
        self.assertEqual(observed(Conditions(if_modified_since=same)), 304)
        self.assertEqual(observed(Conditions(if_unmodified_since=same)), 200)

    def test_future_modified_since_ignored(self) -> None:
        """An If-Modified-Since later than the server's clock is invalid and ignored."""
        future = email.utils.formatdate(NOW + 60, usegmt=True)
        self.assertEqual(observed(Conditions(if_modified_since=future)), 200)
        self.assertRaises(
            errors.NotModified, check_read, Conditions(if_modified_since=future), ETAG, MTIME
        )

    def test_star(self) -> None:
        """'*' matches any existing object: If-Match holds, If-None-Match gives 304."""
        self.assertEqual(observed(Conditions(if_match="*")), 200)
        self.assertEqual(observed(Conditions(if_none_match="*")), 304)

    def test_weak_comparison(self) -> None:
        """A weak tag never satisfies If-Match (strong comparison) but does If-None-Match."""
        self.assertFalse(etag_matches(f'W/"{ETAG}"', ETAG))
        self.assertTrue(etag_matches(f'W/"{ETAG}"', ETAG, weak=True))
        self.assertTrue(etag_matches(f'"a", {ETAG} ,"b"', ETAG))
        self.assertFalse(etag_matches("*", None))

    def test_from_headers(self) -> None:
        """Conditions read the four headers, or the x-amz-copy-source- ones with the prefix."""
        headers = {
            "if-match": "a",
            "if-none-match": "b",
            "if-modified-since": "c",
            "if-unmodified-since": "d",
            "x-amz-copy-source-if-match": "e",
        }
        self.assertEqual(Conditions.from_headers(headers.get), Conditions("a", "b", "c", "d"))
        copy = Conditions.from_headers(headers.get, "x-amz-copy-source-")
        self.assertEqual(copy, Conditions(if_match="e"))
        self.assertTrue(copy.present)
        self.assertFalse(Conditions().present)


class HttpDateTests(SynchronousTestCase):
    def test_three_forms(self) -> None:
        """IMF-fixdate, RFC 850 and asctime dates (RFC 7231 §7.1.1.1) are the same instant."""
        expected = datetime.datetime(1994, 11, 6, 8, 49, 37, tzinfo=datetime.UTC).timestamp()
        for value in (
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "  Sun, 06 Nov 1994 08:49:37 GMT ",
        ):
            self.assertEqual(parse_http_date(value), expected, value)

    def test_not_dates(self) -> None:
        """Values that are not HTTP-dates parse to None (and so are ignored)."""
        for value in (
            None,
            "",
            "yesterday",
            "2015-10-21T07:28:00Z",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 06 Nov 99999 08:49:37 GMT",
            "Wed, 21 Oct 2015 07:28:00 +2400",
        ):
            self.assertIsNone(parse_http_date(value), value)

    @given(st.text())
    def test_never_raises(self, value: str) -> None:
        """Any header text parses to a number or None, never an exception."""
        result = parse_http_date(value)
        self.assertTrue(result is None or isinstance(result, float))

    @given(st.integers(0, 2**34))
    def test_round_trip(self, seconds: int) -> None:
        """A date formatted as Last-Modified is formatted parses back to its second."""
        self.assertEqual(parse_http_date(email.utils.formatdate(seconds, usegmt=True)), seconds)
        self.assertEqual(
            parse_http_date(time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(seconds))), seconds
        )
