"""One writer at a time on SQLite, the urgent first.

SQLite has one writer. Left to SQLite, threads of a process that want to write at
once poll for its lock (``busy_timeout`` sleeps 1, 2, 5 … 100 ms between tries), so a
timer batch behind a few posts being marked sent waited tens of milliseconds after
the lock was free. The store's threads queue on this lock instead (``busy_timeout``
still covers another process on the same file). An *urgent* writer (a timer firing,
the leader's lease) goes before the others waiting: during a burst of deliveries a
due timer waits for one transaction, not for every post queued ahead of it.

Re-entrant: a transaction opened inside another on the same thread was allowed before.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class WriterLock:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._urgent = 0  # urgent writers waiting
        self.waiting = 0  # writers waiting, urgent or not

    @contextmanager
    def held(self, *, urgent: bool = False) -> Iterator[None]:
        self.acquire(urgent=urgent)
        try:
            yield
        finally:
            self.release()

    def acquire(self, *, urgent: bool = False) -> None:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return
            self._urgent += urgent
            self.waiting += 1
            try:
                while self._owner is not None or (not urgent and self._urgent):
                    self._cond.wait()
            finally:
                self._urgent -= urgent
                self.waiting -= 1
            self._owner, self._depth = me, 1

    def release(self) -> None:
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("released by a thread that does not hold it")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()
