"""bot/store/writer.py: SQLite's writers of one process take turns, the urgent first."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from bot.store.writer import UrgentFirst, WriterLock


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


# ---- UrgentFirst: PostgreSQL's writers side by side, none starting during an urgent one --


def test_no_transaction_begins_while_an_urgent_one_runs_and_all_begin_after_it() -> None:
    gate = UrgentFirst()
    began: list[str] = []
    urgent_in, urgent_out = threading.Event(), threading.Event()

    def urgent() -> None:
        with gate.held(urgent=True):
            urgent_in.set()
            assert urgent_out.wait(10)

    def post(name: str) -> None:
        with gate.held():
            began.append(name)

    first = threading.Thread(target=urgent)
    first.start()
    assert urgent_in.wait(10)
    posts = [threading.Thread(target=post, args=(f"post {i}",)) for i in range(3)]
    for t in posts:
        t.start()
    wait_until(lambda: gate.waiting == 3)
    assert began == []  # all three wait for the timer batch
    urgent_out.set()
    for t in [first, *posts]:
        t.join(timeout=10)
    assert sorted(began) == ["post 0", "post 1", "post 2"]
    assert gate.waiting == 0


def test_an_urgent_transaction_does_not_wait_for_those_under_way_nor_they_for_each_other() -> None:
    gate = UrgentFirst()
    inside = threading.Barrier(3, timeout=10)
    release = threading.Event()

    def post() -> None:
        with gate.held():
            inside.wait()  # both posts inside at once: side by side
            assert release.wait(10)

    posts = [threading.Thread(target=post) for _ in range(2)]
    for t in posts:
        t.start()
    inside.wait()
    done = threading.Event()

    def urgent() -> None:
        with gate.held(urgent=True):
            done.set()

    batch = threading.Thread(target=urgent)
    batch.start()
    assert done.wait(10)  # while both posts are still inside
    release.set()
    for t in [*posts, batch]:
        t.join(timeout=10)


def test_a_thread_inside_a_transaction_opens_another_without_waiting() -> None:
    gate = UrgentFirst()
    outer, urgent_in, release, opened = (threading.Event() for _ in range(4))

    def urgent() -> None:
        with gate.held(urgent=True):
            urgent_in.set()
            assert release.wait(10)

    def nested() -> None:
        with gate.held():
            outer.set()
            assert urgent_in.wait(10)
            with gate.held():  # it may hold rows the urgent one needs: no waiting
                opened.set()

    holder = threading.Thread(target=nested)
    holder.start()
    assert outer.wait(10)
    batch = threading.Thread(target=urgent)
    batch.start()
    assert opened.wait(10)  # while the urgent one still runs
    assert not release.is_set() and gate.waiting == 0

    def outside() -> None:
        with gate.held():
            pass

    waiter = threading.Thread(target=outside)
    waiter.start()
    wait_until(lambda: gate.waiting == 1)  # a thread outside any transaction does wait
    release.set()
    for th in (batch, holder, waiter):
        th.join(timeout=10)
    assert gate.waiting == 0


def test_those_held_back_by_a_batch_begin_before_the_next_batch() -> None:
    """Back-to-back batches (a burst of timers) on one thread: a command held back long
    enough (here: at all) begins before the next batch, not after the whole burst."""
    gate = UrgentFirst(fair_after=0)
    order: list[str] = []
    first_in, release = threading.Event(), threading.Event()

    def batches() -> None:
        with gate.held(urgent=True):
            first_in.set()
            assert release.wait(10)
        with gate.held(urgent=True):  # at once, as the firing thread does
            order.append("batch 2")

    def command() -> None:
        with gate.held():
            order.append("command")

    firing = threading.Thread(target=batches)
    firing.start()
    assert first_in.wait(10)
    waiter = threading.Thread(target=command)
    waiter.start()
    wait_until(lambda: gate.waiting == 1)
    release.set()
    for t in (firing, waiter):
        t.join(timeout=10)
    assert order == ["command", "batch 2"]
