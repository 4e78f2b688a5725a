"""A bounded cache of values by key, the least recently used dropped first."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """Values by key, up to ``max_weight`` in all, each weighing ``weigh(key, value)``; when more
    is added, the least recently used go first.  A value heavier than the bound is not kept.
    Any thread."""

    def __init__(self, max_weight: int, weigh: Callable[[K, V], int]) -> None:
        self.max_weight = max_weight
        self._weigh = weigh
        self._values: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            kept = self._values.get(key)
            if kept is None:
                return None
            self._values.move_to_end(key)
            return kept[0]

    def add(self, key: K, value: V) -> None:
        weight = self._weigh(key, value)
        if weight > self.max_weight:
            return
        with self._lock:
            if key in self._values:
                return
            self._values[key] = (value, weight)
            self._weight += weight
            while self._weight > self.max_weight:
                _, (_, dropped) = self._values.popitem(last=False)
                self._weight -= dropped

    def discard(self, key: K) -> None:
        with self._lock:
            kept = self._values.pop(key, None)
            if kept is not None:
                self._weight -= kept[1]

    def __len__(self) -> int:
        return len(self._values)

    @property
    def weight(self) -> int:
        """The weight of what is kept."""
        return self._weight
