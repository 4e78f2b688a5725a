"""JSON Lines logging for ``twistd --logger artifactd.logs.json_observer``.

One JSON object per line on stdout (journald captures and rotates it): ``time`` (ISO 8601 UTC),
``level``, ``namespace``, ``msg`` (the rendered message), the event's own fields, and
``traceback`` for failures.  Twisted's bookkeeping keys (``log_*``) are dropped.

While the reactor runs, the lines logged on its thread are written together once per turn of
the reactor (see :class:`Lines`); the service turns this on with :func:`gather_writes`.
"""

from __future__ import annotations

import datetime
import json
import math
import sys
import threading
import time
import weakref
from typing import IO, Any, cast

from twisted.internet.interfaces import IReactorTime
from twisted.logger import ILogObserver, LogEvent, LogLevel, formatEvent
from twisted.logger import Logger as _TwistedLogger
from zope.interface import provider

_SECRET_FIELDS = frozenset(
    {"secret", "secret_key", "root_secret_key", "authorization", "signature"}
)


def _default(value: object) -> str:
    return repr(value)


_ENCODER = json.JSONEncoder(default=_default, ensure_ascii=False)


def format_message(event: LogEvent) -> str:
    """``formatEvent(event)``, without ``string.Formatter`` for the usual event.

    A ``str`` format naming plain fields formats the same with ``str.format_map``: both format
    each value with ``format(value, spec)`` after the same conversion and attribute/index
    lookups.  Twisted's extras (``{callable()}``, flattened events) and every failure (a
    missing field, a positional field) take ``formatEvent`` itself.
    """
    fmt = event.get("log_format")
    if type(fmt) is str and "()" not in fmt and "log_flattened" not in event:
        try:
            return fmt.format_map(event)
        except Exception:
            pass
    return formatEvent(event)


def _iso_time(when: float) -> str:
    """``datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds")``, with the part
    up to the second formatted once per second (the access log writes one event per request)."""
    fraction, whole = math.modf(when)  # rounded to the microsecond first, as datetime does
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    elif micros < 0:
        whole, micros = whole - 1, micros + 1_000_000
    second = int(whole)
    millis = micros // 1000
    if _second[0] != second:
        moment = datetime.datetime.fromtimestamp(second, tz=datetime.UTC)
        _second[:] = [second, moment.strftime("%Y-%m-%dT%H:%M:%S")]
    return f"{_second[1]}.{millis:03d}+00:00"


_second: list[Any] = [None, ""]


# What an event's own fields may not be called: the keys written first, Twisted's legacy keys
# and secrets.  (Twisted's bookkeeping keys, ``log_*``, are dropped as well.)
_NOT_FIELDS = frozenset(
    {"time", "level", "namespace", "msg"}
    | {"format", "message", "isError", "system", "why", "failure"}
    | _SECRET_FIELDS
)
_MAX_LAYOUTS = 1024


def _field_names(event: LogEvent) -> tuple[str, ...]:
    """The event's own fields, in its order.  Remembered per layout (the event's keys, in
    order): one ``Logger`` call site makes the same layout every time, the access log one per
    request."""
    layout = tuple(event)
    names = _layouts.get(layout)
    if names is None:
        names = tuple(k for k in layout if not (k.startswith("log_") or k in _NOT_FIELDS))
        if len(_layouts) >= _MAX_LAYOUTS:
            _layouts.clear()
        _layouts[layout] = names
    return names


_layouts: dict[tuple[str, ...], tuple[str, ...]] = {}


def event_as_dict(event: LogEvent) -> dict[str, Any]:
    """The JSON-ready form of one event."""
    level = event.get("log_level")
    out: dict[str, Any] = {
        "time": _iso_time(event.get("log_time", 0.0)),
        "level": level.name if level is not None else "info",
        "namespace": event.get("log_namespace", ""),
        "msg": format_message(event),
    }
    for key in _field_names(event):
        out[key] = event[key]
    failure = event.get("log_failure")
    if failure is not None:
        out["traceback"] = failure.getTraceback()
        if not out["msg"]:
            out["msg"] = failure.getErrorMessage()
    return out


class Lines:
    """Writes an observer's lines to its stream: each at once, flushed -- or, while gathering,
    the lines logged on the reactor's thread together, in one write, at the reactor's next turn.

    A busy reactor serves many requests in one turn, and each writes an access line: one write
    (a system call on an unbuffered stdout, or to journald's socket) per line was about a
    twentieth of a small GET's cost.  The gathered lines are written at the start of the next
    turn, before that turn sends the responses the requests wrote (a transport sends just before
    the reactor polls -- see :mod:`artifactd.http.writes` -- or when the poll finds its socket
    writable, both after the turn's timed calls).  A line logged in a timed call waits one turn
    more, a response queued behind unsent bytes may leave in the turn it was written, and a
    streamed body (sent as it is read) leaves before its request's line.  A line from any other
    thread first writes what is gathered, so lines keep their order.  If the process is killed,
    the lines of the turn it was in are lost with it.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.RLock()
        self._pending: list[str] = []
        self._reactor: IReactorTime | None = None
        self._thread: int | None = None

    def write(self, line: str) -> None:
        with self._lock:
            if self._reactor is not None and threading.get_ident() == self._thread:
                self._pending.append(line)
                if len(self._pending) == 1:
                    self._reactor.callLater(0, self.flush)
                return
            self._write([*self._take(), line])

    def gather(self, reactor: IReactorTime) -> None:
        """Gather the lines logged on the calling thread (the reactor's) from now on."""
        with self._lock:
            self._reactor = reactor
            self._thread = threading.get_ident()

    def stop_gathering(self) -> None:
        """Write what is gathered; from now on every line is written at once."""
        with self._lock:
            self._reactor = self._thread = None
            self.flush()

    def flush(self) -> None:
        """Write the gathered lines.  If the stream fails, gathering stops (later lines meet the
        failure themselves, which makes Twisted drop the observer) and the error is raised."""
        with self._lock:
            try:
                self._write(self._take())
            except BaseException:
                self._reactor = self._thread = None
                raise

    def _take(self) -> list[str]:
        lines, self._pending = self._pending, []
        return lines

    def _write(self, lines: list[str]) -> None:
        if lines:
            lines.append("")
            self._stream.write("\n".join(lines))
            self._stream.flush()


def json_observer_to(stream: IO[str]) -> ILogObserver:
    return _json_observer(Lines(stream))


def _json_observer(lines: Lines) -> ILogObserver:
    write = lines.write

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        try:
            line = _ENCODER.encode(event_as_dict(event))
        except Exception as e:  # never let a bad field kill logging
            line = json.dumps({"level": "error", "msg": f"unloggable event: {e!r}"})
        write(line)

    return cast(ILogObserver, observe)


_stdout_lines: weakref.WeakSet[Lines] = weakref.WeakSet()


def json_observer() -> ILogObserver:
    """The factory twistd's ``--logger`` calls: JSON Lines to stdout, gathered per turn of the
    reactor once :func:`gather_writes` is called."""
    lines = Lines(sys.stdout)
    _stdout_lines.add(lines)
    return _json_observer(lines)


def gather_writes(reactor: IReactorTime) -> None:
    """Gather the lines of :func:`json_observer`'s observers logged on the calling thread (the
    reactor's, which must be running) and write them once per turn, until
    :func:`stop_gathering`."""
    for lines in list(_stdout_lines):
        lines.gather(reactor)


def stop_gathering() -> None:
    """Write what :func:`json_observer`'s observers have gathered and stop gathering."""
    for lines in list(_stdout_lines):
        lines.stop_gathering()


_LEVELS = frozenset(LogLevel.iterconstants())


class Logger(_TwistedLogger):
    """:class:`twisted.logger.Logger`, with an ``emit`` that makes the same event more cheaply.

    Twisted's checks the level against a freshly sorted list of :class:`LogLevel`'s constants on
    every call: a fifth of what emitting an access event cost.  This one checks it against a set
    and leaves an invalid level to Twisted's own report.
    """

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: object) -> None:
        if level not in _LEVELS:
            super().emit(level, format, **kwargs)
            return
        kwargs.update(
            log_logger=self,
            log_level=level,
            log_namespace=self.namespace,
            log_source=self.source,
            log_format=format,
            log_time=time.time(),
        )
        if "log_trace" in kwargs:
            cast(list[Any], kwargs["log_trace"]).append((self, self.observer))
        self.observer(kwargs)
