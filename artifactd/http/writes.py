"""Responses sent just before the reactor polls, without watching sockets for writability.

A Twisted TCP transport queues what its protocol writes and asks the reactor to watch the socket
for writability (``startWriting``: an ``epoll_ctl``).  The reactor's next poll reports the socket
writable, the transport sends, and with nothing left it stops the watch (``stopWriting``: a
second ``epoll_ctl``).  A small response fits the socket's send buffer whole, so the two calls
and the extra event buy nothing; on a 4 KiB GET they were about a twentieth of the reactor's
time.

:class:`WriteGathering` changes when a transport it has *adopted* sends, not how: its
``startWriting`` only notes that it has bytes queued, and just before the reactor next polls
(after the turn's timed calls, such as the gathered access-log lines: see
:class:`artifactd.logs.Lines`) each noted transport sends what it can, through the reactor's own
write handling (``doWrite``, so closing after the last byte, producers and errors behave as
before).  Only a transport left with unsent bytes -- a full send buffer -- is watched, as before.
A turn's responses still leave together, at the same point of the reactor's loop as when the
poll reported their sockets writable.

Reactor thread only.  Reactors without poll-style dispatch (``_doReadOrWrite`` with
``_POLL_OUT``: the epoll and poll reactors have it) and transports other than TCP connections
are left alone.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.internet import abstract, tcp


class WriteGathering:
    """Sends the queued bytes of the transports it adopts just before each poll."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._pending: OrderedDict[tcp.Connection, None] = OrderedDict()
        self._sending = False
        self._installed = False
        self._original: Callable[[float | None], None] | None = None
        self._shadowed = False  # the reactor had its own doIteration attribute
        self._current: tcp.Connection | None = None  # the transport sending now
        self._current_stopped = False  # ... has stopped writing (sent all, or lost)

    def install(self) -> bool:
        """Hook the reactor's loop; False (and nothing changed) when the reactor is not a
        poll-style one."""
        reactor = self._reactor
        if self._installed:
            return True
        if not (hasattr(reactor, "_doReadOrWrite") and hasattr(reactor, "_POLL_OUT")):
            return False
        original = reactor.doIteration
        pending = self._pending
        send = self.send

        def doIteration(timeout: float | None) -> None:
            if pending:
                send()
                # the loop chose ``timeout`` before these sends; what they set going (a
                # producer resumed by a drained transport schedules its next turn) must not
                # wait for the poll to time out
                soon = reactor.timeout()
                if soon is not None and (timeout is None or soon < timeout):
                    timeout = soon
            original(timeout)

        self._original = original
        self._shadowed = "doIteration" in vars(reactor)
        reactor.doIteration = doIteration
        self._installed = True
        return True

    def uninstall(self) -> None:
        """Send what is queued and unhook; adopted transports then ask the reactor to watch
        their sockets, as unadopted ones do."""
        if not self._installed:
            return
        self._installed = False
        self.send()
        if self._shadowed:
            self._reactor.doIteration = self._original
        else:
            del self._reactor.doIteration
        self._original = None

    def adopt(self, transport: object) -> bool:
        """Have ``transport`` (a TCP connection) send before the next poll rather than watch
        its socket; False if it is left as it is."""
        if not self._installed or not isinstance(transport, tcp.Connection):
            return False
        transport.startWriting = lambda: self._start_writing(transport)  # type: ignore[method-assign]
        transport.stopWriting = lambda: self._stop_writing(transport)  # type: ignore[method-assign]
        return True

    # the adopted transports' startWriting / stopWriting ------------------------------
    def _start_writing(self, transport: tcp.Connection) -> None:
        if self._sending or not self._installed:
            # written while the queued bytes are being sent (a producer resumed, say), or
            # after uninstall: watched as usual; the poll that follows sees it
            abstract.FileDescriptor.startWriting(transport)
        else:
            self._pending[transport] = None

    def _stop_writing(self, transport: tcp.Connection) -> None:
        self._pending.pop(transport, None)
        if transport is self._current:
            self._current_stopped = True
        abstract.FileDescriptor.stopWriting(transport)
        if transport.disconnected:
            # connectionLost: the transport's own methods again, so that it and these two
            # functions (which refer to it) do not wait for the garbage collector
            vars(transport).pop("startWriting", None)
            vars(transport).pop("stopWriting", None)

    # before each poll ------------------------------------------------------------------
    def send(self) -> None:
        """Have every noted transport send what it can; watch those left with bytes."""
        pending = self._pending
        reactor = self._reactor
        do_write = reactor._doReadOrWrite
        poll_out = reactor._POLL_OUT
        self._sending = True
        try:
            while pending:
                transport, _ = pending.popitem(last=False)
                self._current, self._current_stopped = transport, False
                # what the reactor does when the poll reports the socket writable:
                # doWrite, and on an error or a finished close, connectionLost
                do_write(transport, transport.fileno(), poll_out)
                if not self._current_stopped and transport.connected:
                    # bytes are left (the send buffer is full): watch, as before
                    abstract.FileDescriptor.startWriting(transport)
        finally:
            self._sending = False
            self._current = None
