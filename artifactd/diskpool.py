"""The disk pool: the threads that hash, write, fsync and commit.

A ``concurrent.futures`` thread pool whose results come back to the reactor thread through
``callFromThread``.  It does what ``deferToThreadPool`` over twisted's ThreadPool does, with a
cheaper hand-off on the reactor thread (a queue put, where twisted's pool goes through its
coordinator's lock worker): small PUTs cross to the pool twice each.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure

from artifactd import errors

P = ParamSpec("P")
T = TypeVar("T")


class DiskPool:
    def __init__(self, reactor: Any, threads: int) -> None:
        self._reactor = reactor
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="artifactd-disk")

    def run(self, f: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        """Call ``f`` in a pool thread; the Deferred fires on the reactor thread with its result
        or its failure (any exception, even a BaseException)."""
        d: Deferred[T] = Deferred()
        call_back = self._reactor.callFromThread

        def work() -> None:
            try:
                result = f(*args, **kwargs)
            except BaseException:
                call_back(d.errback, Failure())
            else:
                call_back(d.callback, result)

        try:
            self._executor.submit(work)
        except RuntimeError:  # stopped: the daemon is shutting down
            return fail(errors.ServiceUnavailable())
        return d

    def stop(self) -> None:
        """Finish the calls already submitted and join the threads (blocks)."""
        self._executor.shutdown(wait=True)
