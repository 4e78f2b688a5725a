"""The JSON Lines observer: its message fast path renders exactly what ``formatEvent`` does."""

from __future__ import annotations

import datetime
import io
import json
import sys
import threading
import time
from typing import IO, Any, cast

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, InvalidLogLevelError, Logger, LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from artifactd import logs
from artifactd.logs import _iso_time, event_as_dict, format_message, json_observer_to

ACCESS_FORMAT = "{action} {status} {method} {resource} {duration_ms}ms {request_id}"

_NAMES = st.sampled_from(["action", "status", "key", "missing", "log_level", "x"])
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(), max_size=2),
)
_FIELDS = st.one_of(
    _NAMES,
    st.builds(lambda n, c: f"{n}!{c}", _NAMES, st.sampled_from("rsa")),
    st.builds(lambda n, s: f"{n}:{s}", _NAMES, st.sampled_from([">8", ".2f", "d", "x", "", "{x}"])),
    st.builds(lambda n, a: f"{n}.{a}", _NAMES, st.sampled_from(["real", "upper", "nope"])),
    st.builds(lambda n, i: f"{n}[{i}]", _NAMES, st.sampled_from(["0", "a", "1"])),
    st.sampled_from(["", "0", "x()", "action()", "x.upper()"]),
)
_PIECES = st.one_of(
    st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=5),
    st.sampled_from(["{{", "}}", "{", "}", "()"]),
    st.builds(lambda f: "{" + f + "}", _FIELDS),
)
_FORMATS = st.one_of(
    st.lists(_PIECES, max_size=6).map("".join), st.none(), st.binary(max_size=5), st.integers()
)


def access_event(**fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "log_format": ACCESS_FORMAT,
        "log_level": LogLevel.info,
        "log_namespace": "artifactd.access",
        "log_time": 1764300000.5,
        "action": "GetObject",
        "status": 200,
        "method": "GET",
        "resource": "/bucket/key",
        "duration_ms": 1.25,
        "request_id": "0123456789ABCDEF",
    }
    event.update(fields)
    return event


class TimeTests(SynchronousTestCase):
    @given(st.floats(min_value=0, max_value=4e9) | st.integers(0, 4 * 10**9).map(float))
    def test_iso_time_is_datetimes(self, when: float) -> None:
        """The cached-second timestamp is exactly datetime's (rounded to the microsecond, then
        cut to the millisecond), whatever the order of the calls."""
        expected = datetime.datetime.fromtimestamp(when, tz=datetime.UTC)
        self.assertEqual(_iso_time(when), expected.isoformat(timespec="milliseconds"))


class FormatMessageTests(SynchronousTestCase):
    def test_access_event(self) -> None:
        event = access_event()
        self.assertEqual(
            format_message(event), "GetObject 200 GET /bucket/key 1.25ms 0123456789ABCDEF"
        )
        self.assertEqual(format_message(event), formatEvent(event))

    def test_callable_field(self) -> None:
        event = {"log_format": "{x()} {y}", "x": lambda: "called", "y": 1}
        self.assertEqual(format_message(event), "called 1")

    def test_unformattable(self) -> None:
        event = {"log_format": "{missing}"}
        self.assertEqual(format_message(event), formatEvent(event))
        self.assertIn("Unable to format event", format_message(event))

    @given(
        fmt=_FORMATS,
        values=st.dictionaries(_NAMES, _VALUES, max_size=4),
        callable_x=st.booleans(),
    )
    def test_same_as_format_event(
        self, fmt: object, values: dict[str, Any], callable_x: bool
    ) -> None:
        event: dict[str, Any] = {"log_format": fmt, **values}
        if callable_x:
            event["x"] = lambda: "called"
        expected = formatEvent(event)
        got = format_message(event)
        if "Unable to format event" in expected:
            # the generic text names the exception's repr, whose object ids differ per call
            self.assertIn("Unable to format event", got)
        else:
            self.assertEqual(got, expected)

    @given(
        action=st.text(),
        status=st.integers(),
        method=st.one_of(st.none(), st.text()),
        resource=st.text(),
        duration=st.floats(),
        request_id=st.text(),
    )
    def test_access_events(
        self,
        action: str,
        status: int,
        method: str | None,
        resource: str,
        duration: float,
        request_id: str,
    ) -> None:
        event = access_event(
            action=action,
            status=status,
            method=method,
            resource=resource,
            duration_ms=duration,
            request_id=request_id,
        )
        self.assertEqual(format_message(event), formatEvent(event))


def generic_event_as_dict(event: dict[str, Any]) -> dict[str, Any]:
    """The observer's event form as first written: every key of the event looked at in turn."""
    out: dict[str, Any] = {
        "time": _iso_time(event.get("log_time", 0.0)),
        "level": event["log_level"].name if event.get("log_level") is not None else "info",
        "namespace": event.get("log_namespace", ""),
        "msg": format_message(event),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in out or key in logs._SECRET_FIELDS:
            continue
        if key in ("format", "message", "isError", "system", "time", "why", "failure"):
            continue
        out[key] = value
    failure = event.get("log_failure")
    if failure is not None:
        out["traceback"] = failure.getTraceback()
        if not out["msg"]:
            out["msg"] = failure.getErrorMessage()
    return out


_KEYS = st.sampled_from(
    [
        *("action", "status", "time", "level", "namespace", "msg", "format", "message"),
        *("isError", "system", "why", "failure", "traceback", "secret", "signature"),
        *("log_extra", "logx", "x"),
    ]
)


class EventFormTests(SynchronousTestCase):
    @given(st.lists(st.dictionaries(_KEYS, st.integers(), max_size=6), min_size=1, max_size=3))
    def test_same_as_generic(self, field_sets: list[dict[str, Any]]) -> None:
        """The form made from a remembered layout is the generic one, key order included, for
        any fields, however often a layout recurs."""
        for fields in field_sets + field_sets:
            event = access_event(**fields)
            got = event_as_dict(event)
            expected = generic_event_as_dict(event)
            self.assertEqual(list(got.items()), list(expected.items()))

    def test_access_line_unchanged(self) -> None:
        """The JSON line of a typical access event, byte for byte."""
        stream = io.StringIO()
        observe = json_observer_to(stream)
        event = access_event(
            bucket="bkt",
            query=["uploadId"],
            key="k",
            error_code=None,
            bytes_in=0,
            bytes_out=4096,
            peer="127.0.0.1:1",
            principal="AKID",
        )
        observe(event)
        observe(event)
        line = (
            '{"time": "2025-11-28T03:20:00.500+00:00", "level": "info", "namespace":'
            ' "artifactd.access", "msg": "GetObject 200 GET /bucket/key 1.25ms 0123456789ABCDEF",'
            ' "action": "GetObject", "status": 200, "method": "GET", "resource": "/bucket/key",'
            ' "duration_ms": 1.25, "request_id": "0123456789ABCDEF", "bucket": "bkt", "query":'
            ' ["uploadId"], "key": "k", "error_code": null, "bytes_in": 0, "bytes_out": 4096,'
            ' "peer": "127.0.0.1:1", "principal": "AKID"}\n'
        )
        self.assertEqual(stream.getvalue(), line * 2)

    def test_layouts_bounded(self) -> None:
        """Events of ever new layouts do not grow the remembered layouts without bound."""
        for i in range(logs._MAX_LAYOUTS + 10):
            self.assertEqual(event_as_dict({f"f{i}": i})[f"f{i}"], i)
        self.assertLessEqual(len(logs._layouts), logs._MAX_LAYOUTS)


class ObserverTests(SynchronousTestCase):
    def test_one_json_line_per_event(self) -> None:
        stream = io.StringIO()
        observe = json_observer_to(stream)
        event = access_event(key="k\u00e9", secret="s3cr3t", obj=object)
        observe(event)
        line = stream.getvalue()
        self.assertTrue(line.endswith("\n"))
        self.assertEqual(line.count("\n"), 1)
        decoded = json.loads(line)
        self.assertEqual(decoded["msg"], formatEvent(event))
        self.assertEqual(decoded["key"], "k\u00e9")
        self.assertIn("k\u00e9", line)  # not \\u-escaped
        self.assertEqual(decoded["obj"], repr(object))
        self.assertNotIn("secret", decoded)
        self.assertEqual(decoded, json.loads(json.dumps(event_as_dict(event), default=repr)))


class RecordingStream:
    """A text stream that records each write and flush."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = fail

    def write(self, text: str) -> int:
        if self.fail:
            raise OSError(28, "No space left on device")
        self.calls.append(("write", text))
        return len(text)

    def flush(self) -> None:
        self.calls.append(("flush", ""))

    def text(self) -> str:
        return "".join(text for call, text in self.calls if call == "write")


class LinesTests(SynchronousTestCase):
    def lines(self, fail: bool = False) -> tuple[logs.Lines, RecordingStream]:
        stream = RecordingStream(fail)
        return logs.Lines(cast(IO[str], stream)), stream

    def gathering(self, fail: bool = False) -> tuple[Clock, logs.Lines, RecordingStream]:
        clock = Clock()
        lines, stream = self.lines(fail)
        lines.gather(clock)
        return clock, lines, stream

    def test_each_line_at_once_when_not_gathering(self) -> None:
        lines, stream = self.lines()
        lines.write("a")
        self.assertEqual(stream.calls, [("write", "a\n"), ("flush", "")])
        lines.write("b")
        self.assertEqual(stream.text(), "a\nb\n")

    def test_gathered_lines_written_together_at_the_next_turn(self) -> None:
        clock, lines, stream = self.gathering()
        lines.write("a")
        lines.write("b")
        self.assertEqual(stream.calls, [])
        self.assertEqual(len(clock.getDelayedCalls()), 1)  # one turn, one write
        clock.advance(0)
        self.assertEqual(stream.calls, [("write", "a\nb\n"), ("flush", "")])
        lines.write("c")
        clock.advance(0)
        self.assertEqual(stream.text(), "a\nb\nc\n")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_other_threads_write_at_once_after_what_is_gathered(self) -> None:
        clock, lines, stream = self.gathering()
        lines.write("reactor 1")
        worker = threading.Thread(target=lines.write, args=("worker",))
        worker.start()
        worker.join()
        self.assertEqual(stream.text(), "reactor 1\nworker\n")
        lines.write("reactor 2")
        clock.advance(0)  # the flush scheduled for "reactor 1" writes "reactor 2"
        self.assertEqual(stream.text(), "reactor 1\nworker\nreactor 2\n")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_stop_gathering_writes_what_is_gathered(self) -> None:
        clock, lines, stream = self.gathering()
        lines.write("a")
        lines.stop_gathering()
        self.assertEqual(stream.text(), "a\n")
        lines.write("b")
        self.assertEqual(stream.text(), "a\nb\n")
        clock.advance(0)  # the flush still scheduled finds nothing to write
        self.assertEqual(stream.text(), "a\nb\n")

    def test_failing_stream_stops_gathering(self) -> None:
        clock, lines, _ = self.gathering(fail=True)
        lines.write("a")
        self.assertRaises(OSError, clock.advance, 0)
        # later lines are not gathered: each meets the failure itself
        self.assertRaises(OSError, lines.write, "b")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_twistd_observer_gathers_between_gather_and_stop(self) -> None:
        """The observer ``--logger artifactd.logs.json_observer`` makes writes to stdout, and
        gathers while the service has turned gathering on."""
        stream = RecordingStream()
        self.patch(sys, "stdout", stream)
        observe = logs.json_observer()
        clock = Clock()
        logs.gather_writes(clock)
        self.addCleanup(logs.stop_gathering)
        observe(access_event(key="k1"))
        observe(access_event(key="k2"))
        self.assertEqual(stream.calls, [])
        clock.advance(0)
        self.assertEqual(len(stream.calls), 2)  # one write, one flush
        keys = [json.loads(line)["key"] for line in stream.text().splitlines()]
        self.assertEqual(keys, ["k1", "k2"])
        logs.stop_gathering()
        observe(access_event(key="k3"))
        self.assertEqual(json.loads(stream.text().splitlines()[-1])["key"], "k3")

    def test_other_observers_never_gather(self) -> None:
        stream = io.StringIO()
        observe = json_observer_to(stream)
        logs.gather_writes(Clock())
        self.addCleanup(logs.stop_gathering)
        observe(access_event())
        self.assertEqual(stream.getvalue().count("\n"), 1)


class LoggerTests(SynchronousTestCase):
    def events(self, logger_type: type[Logger], **emit: Any) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        logger = logger_type(
            namespace="artifactd.test", source=self, observer=cast(ILogObserver, seen.append)
        )
        level = emit.pop("level")
        logger.emit(level, emit.pop("format", None), **emit)
        for event in seen:
            self.assertIs(event.pop("log_logger"), logger)
            self.assertLess(abs(event.pop("log_time") - time.time()), 60)
        return seen

    @given(
        level=st.sampled_from(list(LogLevel.iterconstants())),
        fmt=st.one_of(st.none(), st.text(max_size=8)),
        fields=st.dictionaries(st.sampled_from(["a", "status", "key"]), _VALUES, max_size=3),
    )
    def test_same_event_as_twisted(
        self, level: LogLevel, fmt: str | None, fields: dict[str, Any]
    ) -> None:
        ours = self.events(logs.Logger, level=level, format=fmt, **fields)
        twisteds = self.events(Logger, level=level, format=fmt, **fields)
        self.assertEqual(ours, twisteds)
        self.assertEqual(len(ours), 1)
        self.assertEqual(ours[0]["log_namespace"], "artifactd.test")

    def test_invalid_level_reported_as_twisted_does(self) -> None:
        (event,) = self.events(logs.Logger, level="loud", format="x")
        self.assertEqual(event["log_level"], LogLevel.critical)
        self.assertIsInstance(event["log_failure"].value, InvalidLogLevelError)

    def test_trace(self) -> None:
        (event,) = self.events(logs.Logger, level=LogLevel.info, log_trace=[])
        self.assertEqual(len(event["log_trace"]), 1)
        self.assertIs(event["log_trace"][0][1], event["log_trace"][0][0].observer)
