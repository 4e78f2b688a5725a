"""WriteGathering over real loopback TCP connections (the server on the test reactor, a blocking
client in a thread): what an adopted
transport writes arrives whole and in order -- small replies, replies larger than the socket's
send buffer, replies from a pull producer, replies followed by a close -- and only a transport
left with unsent bytes is watched for writability."""

from __future__ import annotations

import gc
import io
import os
import socket
import weakref
from typing import Any, Literal

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.internet.threads import deferToThread
from twisted.protocols.basic import FileSender
from twisted.trial.unittest import SynchronousTestCase, TestCase

from artifactd.http.writes import WriteGathering
from tests.http_harness import Connection, Harness

reactor: Any = _reactor


class _PushProducer:
    """Writes ``data`` in chunks, a turn of the reactor after each resume, until paused: the
    way the daemon's downloads produce."""

    def __init__(self, transport: Any, data: bytes, chunk: int = 128 * 1024) -> None:
        self._transport = transport
        self._data = memoryview(data)
        self._chunk = chunk
        self._paused = False
        self._scheduled = False
        self.done: Deferred[None] = Deferred()

    def start(self) -> Deferred[None]:
        self._transport.registerProducer(self, True)
        self.resumeProducing()
        return self.done

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        if not self._scheduled:
            self._scheduled = True
            reactor.callLater(0, self._produce)

    def stopProducing(self) -> None:
        self._data = self._data[:0]

    def _produce(self) -> None:
        self._scheduled = False
        while not self._paused and self._data:
            piece, self._data = self._data[: self._chunk], self._data[self._chunk :]
            self._transport.write(bytes(piece))
        if not self._data and not self.done.called:
            self._transport.unregisterProducer()
            self.done.callback(None)


class _Replier(Protocol):
    """Answers the first bytes it receives with ``factory.reply`` (written at once, or by a
    pull producer (FileSender) or a push producer when ``factory.produce`` says so), then closes
    if ``factory.close``."""

    factory: _ReplierFactory

    def connectionMade(self) -> None:
        self.factory.transports.append(self.transport)
        if self.factory.writes is not None:
            self.factory.writes.adopt(self.transport)

    def dataReceived(self, data: bytes) -> None:
        factory = self.factory
        transport: Any = self.transport
        if factory.produce:
            if factory.produce == "pull":
                d = FileSender().beginFileTransfer(io.BytesIO(factory.reply), transport)
            else:
                d = _PushProducer(transport, factory.reply).start()
            if factory.close:
                d.addCallback(lambda _: transport.loseConnection())
            return
        transport.write(factory.reply)
        if factory.close:
            transport.loseConnection()


class _ReplierFactory(Factory):
    protocol = _Replier  # type: ignore[assignment]

    def __init__(
        self,
        writes: WriteGathering | None,
        reply: bytes,
        *,
        close: bool,
        produce: Literal["pull", "push"] | None = None,
    ) -> None:
        self.writes = writes
        self.reply = reply
        self.close = close
        self.produce = produce
        self.transports: list[Any] = []


class _Client:
    """A blocking client in a thread of its own, so that the reactor under test sees only the
    server's side: nothing the client does wakes its poll."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.settimeout(20)

    def request(self) -> None:
        self.sock.sendall(b"GET\r\n")

    def read(self, count: int) -> Deferred[bytes]:
        """The next ``count`` bytes (fewer if the connection ends first)."""

        def read() -> bytes:
            data = bytearray()
            while len(data) < count:
                piece = self.sock.recv(count - len(data))
                if not piece:
                    break
                data += piece
            return bytes(data)

        return deferToThread(read)

    def closed(self) -> Deferred[bool]:
        """Whether the server closes the connection with nothing more sent."""
        return deferToThread(lambda: self.sock.recv(1) == b"")


class GatheredWritesTests(TestCase):
    timeout = 30  # a transport left unwatched with bytes to send, or a poll that waits, hangs

    def setUp(self) -> None:
        self.writes = WriteGathering(reactor)
        self.assertTrue(self.writes.install())
        self.addCleanup(self.writes.uninstall)
        # every transport the reactor is asked to watch for writability
        self.watched: list[Any] = []
        add_writer = reactor.addWriter

        def addWriter(writer: Any) -> None:
            self.watched.append(writer)
            add_writer(writer)

        reactor.addWriter = addWriter
        self.addCleanup(delattr, reactor, "addWriter")

    async def _exchange(
        self, factory: _ReplierFactory, expected: int
    ) -> tuple[_Client, bytes, Any]:
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        client = _Client(port.getHost().port)
        self.addCleanup(client.sock.close)
        client.request()
        data = await client.read(expected)
        return client, data, factory.transports[0]

    async def test_small_reply_is_not_watched(self) -> None:
        """A reply that fits the send buffer leaves without a watch on its socket."""
        reply = os.urandom(4096)
        factory = _ReplierFactory(self.writes, reply, close=False)
        _, data, server = await self._exchange(factory, len(reply))
        self.assertEqual(data, reply)
        self.assertNotIn(server, self.watched)

    async def test_unadopted_transport_is_watched(self) -> None:
        """The same reply from a transport not adopted is watched, as Twisted does it."""
        reply = os.urandom(4096)
        factory = _ReplierFactory(None, reply, close=False)
        _, data, server = await self._exchange(factory, len(reply))
        self.assertEqual(data, reply)
        self.assertIn(server, self.watched)

    async def test_reply_then_close(self) -> None:
        """Bytes written before ``loseConnection`` all arrive, then the connection closes."""
        reply = os.urandom(100_000)
        factory = _ReplierFactory(self.writes, reply, close=True)
        client, data, server = await self._exchange(factory, len(reply))
        self.assertEqual(data, reply)
        self.assertTrue(await client.closed())
        self.assertNotIn(server, self.watched)

    async def test_reply_larger_than_the_send_buffer(self) -> None:
        """A reply the socket cannot take at once is watched for the rest, which arrives in
        order before the close."""
        reply = os.urandom(48 * 1024 * 1024)
        factory = _ReplierFactory(self.writes, reply, close=True)
        client, data, server = await self._exchange(factory, len(reply))
        self.assertTrue(data == reply)
        self.assertTrue(await client.closed())
        self.assertIn(server, self.watched)

    async def _produced(self, produce: Literal["pull", "push"]) -> None:
        reply = os.urandom(8 * 1024 * 1024 + 1234)
        factory = _ReplierFactory(self.writes, reply, close=True, produce=produce)
        client, data, _ = await self._exchange(factory, len(reply))
        self.assertTrue(data == reply)
        self.assertTrue(await client.closed())

    async def test_pull_producer(self) -> None:
        """A pull producer (FileSender) is asked for more as the transport drains, and all it
        produces arrives in order."""
        await self._produced("pull")

    async def test_push_producer(self) -> None:
        """A push producer paused by a full buffer and resumed when it drains -- it writes
        again a turn later, from a timed call -- is not left waiting for the poll to time out
        (which would hold this test past its timeout)."""
        await self._produced("push")

    async def test_closed_transport_is_freed(self) -> None:
        """A closed connection's transport is freed at once, not left in a reference cycle
        for the garbage collector."""
        gc.disable()
        self.addCleanup(gc.enable)
        reply = os.urandom(4096)
        factory = _ReplierFactory(self.writes, reply, close=True)
        client, data, server = await self._exchange(factory, len(reply))
        self.assertEqual(data, reply)
        self.assertTrue(await client.closed())
        freed = weakref.ref(server)
        del server
        factory.transports.clear()
        self.assertIsNone(freed())

    async def test_uninstall_sends_what_is_queued(self) -> None:
        """Uninstalling sends the queued bytes at once and restores the reactor's loop; an
        adopted transport then asks for a watch, as any other."""
        reply = os.urandom(4096)
        factory = _ReplierFactory(self.writes, reply, close=False)
        client, data, server = await self._exchange(factory, len(reply))
        self.assertEqual(data, reply)
        self.assertIn("doIteration", vars(reactor))
        server.write(b"queued")
        self.writes.uninstall()
        self.assertNotIn("doIteration", vars(reactor))
        self.assertNotIn(server, self.watched)
        server.write(b"after")
        self.assertIn(server, self.watched)
        self.assertEqual(await client.read(len(b"queuedafter")), b"queuedafter")


class LeftAloneTests(SynchronousTestCase):
    def test_reactor_without_poll_dispatch(self) -> None:
        """A reactor without poll-style dispatch is not hooked; nothing is adopted."""
        memory = MemoryReactor()
        writes = WriteGathering(memory)
        self.assertFalse(writes.install())
        self.assertNotIn("doIteration", vars(memory))
        self.assertFalse(writes.adopt(StringTransport()))

    def test_only_tcp_connections_are_adopted(self) -> None:
        writes = WriteGathering(reactor)
        self.assertFalse(writes.adopt(StringTransport()))  # not installed
        self.assertTrue(writes.install())
        try:
            transport = StringTransport()
            self.assertFalse(writes.adopt(transport))
            self.assertNotIn("startWriting", vars(transport))
        finally:
            writes.uninstall()


class _Recorder(WriteGathering):
    def __init__(self) -> None:
        super().__init__(MemoryReactor())
        self.adopted: list[object] = []

    def adopt(self, transport: object) -> bool:
        self.adopted.append(transport)
        return False


class SiteWiringTests(SynchronousTestCase):
    def test_channels_offer_their_transports(self) -> None:
        """Each connection of a site given a WriteGathering offers it its transport."""
        harness = Harness(self.mktemp())
        recorder = _Recorder()
        harness.site.writes = recorder
        first, second = Connection(harness), Connection(harness)
        self.assertEqual(recorder.adopted, [first.transport, second.transport])
