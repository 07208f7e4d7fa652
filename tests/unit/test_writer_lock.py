"""bot/store/writer.py: SQLite's writers of one process take turns, the urgent first."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from bot.store.writer import WriterLock


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.001)


def test_an_urgent_writer_goes_before_those_already_waiting() -> None:
    lock = WriterLock()
    order: list[str] = []
    lock.acquire()  # a post being marked sent holds it

    def writer(name: str, urgent: bool) -> None:
        with lock.held(urgent=urgent):
            order.append(name)

    threads = []
    for i in range(3):  # three more posts queue first
        threads.append(threading.Thread(target=writer, args=(f"post {i}", False)))
        threads[-1].start()
    wait_until(lambda: lock.waiting == 3)
    threads.append(threading.Thread(target=writer, args=("timer", True)))
    threads[-1].start()
    wait_until(lambda: lock.waiting == 4)
    lock.release()
    for t in threads:
        t.join(timeout=10)
    assert order[0] == "timer"
    assert sorted(order[1:]) == ["post 0", "post 1", "post 2"]
    assert lock.waiting == 0


def test_re_entrant_on_one_thread_and_held_by_one_thread_at_a_time() -> None:
    lock = WriterLock()
    inside = threading.Event()
    got = threading.Event()
    with lock.held(), lock.held(urgent=True):  # nested on one thread: no deadlock

        def other() -> None:
            inside.set()
            with lock.held(urgent=True):
                got.set()

        t = threading.Thread(target=other)
        t.start()
        inside.wait(10)
        wait_until(lambda: lock.waiting == 1)
        assert not got.is_set()
    t.join(timeout=10)
    assert got.is_set()  # released once the outer hold ended


def test_release_by_a_thread_that_does_not_hold_it_is_refused() -> None:
    lock = WriterLock()
    with pytest.raises(RuntimeError, match="does not hold"):
        lock.release()
