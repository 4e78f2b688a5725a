"""JSON Lines logging for ``twistd --logger artifactd.logs.json_observer``.

One JSON object per line on stdout (journald captures and rotates it): ``time`` (ISO 8601 UTC),
``level``, ``namespace``, ``msg`` (the rendered message), the event's own fields, and
``traceback`` for failures.  Twisted's bookkeeping keys (``log_*``) are dropped.
"""

from __future__ import annotations

import datetime
import json
import math
import sys
from typing import IO, Any, cast

from twisted.logger import ILogObserver, LogEvent, formatEvent
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


def json_observer_to(stream: IO[str]) -> ILogObserver:
    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        try:
            line = _ENCODER.encode(event_as_dict(event))
        except Exception as e:  # never let a bad field kill logging
            line = json.dumps({"level": "error", "msg": f"unloggable event: {e!r}"})
        stream.write(line + "\n")
        stream.flush()

    return cast(ILogObserver, observe)


def json_observer() -> ILogObserver:
    """The factory twistd's ``--logger`` calls: JSON Lines to stdout."""
    return json_observer_to(sys.stdout)
