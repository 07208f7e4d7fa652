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
import time
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


class UrgentFirst:
    """PostgreSQL's writers run side by side, but none starts while an urgent one runs.

    PostgreSQL needs no turns, yet under a burst of deliveries (each post two short
    transactions on the store's threads) a timer batch shared the process's one
    interpreter lock and the server's CPUs with them: every round trip of the batch
    waited for the lock again, and 10,000 timers due at once took 20 s to fire instead
    of 4.5 s with nothing else running (issue 13). An urgent transaction (a timer batch)
    now starts at once; other transactions and reads wait to begin until no urgent one
    runs (a batch is tens of milliseconds). Those already under way finish; a thread
    already inside a transaction or a read never waits here (it may hold rows the
    urgent one needs). In a burst of back-to-back batches, those held back for
    ``fair_after`` seconds begin before the next batch does: a command waits about that
    long and one batch, not for the whole burst (letting every one of them in after
    each batch made 10,000 timers due at once take 9.5 s instead of 7.7 s)."""

    def __init__(self, fair_after: float = 0.1) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._urgent = 0  # urgent transactions running
        self._admitting = 0  # held back long enough: they begin before the next batch
        self._held_since = 0.0  # when the longest waiting of them began to wait
        self._fair_after = fair_after
        self._depth = threading.local()
        self.waiting = 0  # transactions waiting to begin

    @contextmanager
    def held(self, *, urgent: bool = False) -> Iterator[None]:
        depth: int = getattr(self._depth, "n", 0)
        with self._cond:
            if urgent:
                while self._admitting:
                    self._cond.wait()
                self._urgent += 1
            elif depth == 0 and self._urgent:
                if not self.waiting:
                    self._held_since = time.monotonic()
                self.waiting += 1
                try:
                    while self._urgent:
                        self._cond.wait()
                finally:
                    self.waiting -= 1
                    if self._admitting:
                        self._admitting -= 1
                        if not self._admitting:
                            self._cond.notify_all()
        self._depth.n = depth + 1
        try:
            yield
        finally:
            self._depth.n = depth
            if urgent:
                with self._cond:
                    self._urgent -= 1
                    if not self._urgent:
                        held = time.monotonic() - self._held_since
                        if self.waiting and held >= self._fair_after:
                            self._admitting = self.waiting
                        self._cond.notify_all()
