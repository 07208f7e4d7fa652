"""Two real ``pira run`` processes on one PostgreSQL database: they migrate the
schema once between them, exactly one leads, and leadership moves when the leader
is killed or frozen. (The in-process tests of the same rules, on a fake clock, are
in tests/integration/test_leadership.py.)"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import text

from bot.store.db import MIGRATIONS
from tests.support.replicas import ReplicaFactory, Replicas, replicas

__all__ = ["replicas"]  # the fixture, used by name below

pytestmark = pytest.mark.slow

LEASE = 3.0  # seconds: config leader_lease; a replica renews every third of it
RENEW = LEASE / 3
MARGIN = 7.0  # a busy 2-core machine: process scheduling, database round trips
CONFIG = {"leader_lease": f"{LEASE:g}s"}

LEADS = "leader: running the scheduler and the outbox"
STANDS_BY = "another replica leads: standing by"
LOST = "leadership lost: standing by"


def head_revision() -> str:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def wall(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["ts"])


def wait_renewed(group: Replicas, holder: str, times: int, timeout: float) -> None:
    """Wait until ``holder`` renewed the lease ``times`` more times, failing at once if
    anyone else holds it meanwhile."""
    deadline = time.monotonic() + timeout
    first = group.lease()
    assert first is not None and first.holder == holder, first
    seen = {first.expires_at}
    while len(seen) <= times:
        row = group.lease()
        assert row is not None and row.holder == holder, (row, group.summary())
        seen.add(row.expires_at)
        if time.monotonic() > deadline:
            raise AssertionError(f"{holder} renewed {len(seen) - 1} of {times} times")
        time.sleep(0.05)


def wait_blocked(group: Replicas, count: int, timeout: float) -> list[str]:
    """Wait until ``count`` of the replicas' database sessions wait for a lock; what
    each waits in."""
    deadline = time.monotonic() + timeout
    while True:
        blocked = [s for s in group.sessions() if s["wait_event_type"] == "Lock"]
        if len(blocked) >= count:
            return [f"replica {s['replica']}: {s['query'][:40]}" for s in blocked]
        for replica in group:
            assert replica.alive, f"replica {replica.index} exited:\n{replica.tail()}"
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(blocked)} of {count} blocked: {group.sessions()}")
        time.sleep(0.05)


@pytest.mark.parametrize("gated", [True, False], ids=["held-at-a-gate", "free-start"])
def test_two_replicas_starting_at_once_migrate_the_schema_once(
    replicas: ReplicaFactory, gated: bool
) -> None:
    """Both start at once on a fresh, empty schema. ``free-start``: as they come (they
    overlap in the migration only sometimes, ~100 ms of a ~1 s start). ``held-at-a-gate``:
    the test holds the schema's lock (an uncommitted ``DROP SCHEMA``) until both
    replicas wait for it inside their migration, then lets them go together: the
    worst case, every time."""
    group = replicas(2, config=CONFIG)
    if gated:
        with group.db.connect() as gate:
            schema = gate.execute(text("SELECT current_schema()")).scalar_one()
            gate.execute(text(f'DROP SCHEMA "{schema}"'))  # rolled back below
            group.start()
            waiting = wait_blocked(group, count=2, timeout=60)
            gate.rollback()
        print(f"\nheld at the gate: {waiting}")
    else:
        group.start()
    group.wait_ready(timeout=60)

    head = head_revision()
    migrated = {r.index: r.events("database migrated") for r in group}
    at_head = {r.index: r.events("database already at head") for r in group}
    upgraders = [i for i, lines in migrated.items() if lines]
    assert len(upgraders) == 1, f"upgraded by {upgraders}:\n{group.summary()}"
    (upgrader,) = upgraders
    other = 1 - upgrader
    (line,) = migrated[upgrader]
    assert line["from_revision"] is None and line["to_revision"] == head
    assert migrated[other] == []
    assert [e["revision"] for e in at_head[other]] == [head]
    print(
        f"\nreplica {upgrader} migrated to {head}; replica {other} waited "
        f"{at_head[other][0]['lock_wait_s']}s for the lock, then found it at head"
    )

    with group.db.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [(head,)]
        # Everything in the test's own schema (the URL's search_path), nothing elsewhere.
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        assert schema.startswith("t_")
        where = conn.execute(
            text(
                "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.oid = 'alembic_version'::regclass"
            )
        ).scalar_one()
        assert where == schema
        assert conn.execute(text("SELECT count(*) FROM leases")).scalar_one() == 1


def test_two_processes_starting_at_once_on_one_sqlite_file_both_come_up(tmp_path: Path) -> None:
    """SQLite is the single-replica store, but two processes started by mistake on one
    file must not crash in the migration (``BEGIN IMMEDIATE`` serialises them). Runs on
    every backend: it needs no PostgreSQL."""
    url = f"sqlite:///{tmp_path / 'pira.db'}"
    with Replicas(db_url=url, workdir=tmp_path / "replicas", config=CONFIG) as group:
        group.start()
        group.wait_ready(timeout=60)
        upgraders = [r.index for r in group if r.events("database migrated")]
        assert len(upgraders) == 1, group.summary()
        assert len(group[1 - upgraders[0]].events("database already at head")) == 1


def test_one_leader_and_kill9_failover_within_the_lease(replicas: ReplicaFactory) -> None:
    group = replicas(2, config=CONFIG).start()
    group.wait_ready(timeout=60)
    first = group.wait_leader()
    standby = 1 - first

    # Exactly one leads, says so, and keeps renewing; the other stands by.
    assert [e["event"] for e in group[first].events() if e["event"] in (LEADS, STANDS_BY)] == [
        LEADS
    ]
    assert [e["event"] for e in group[standby].events() if e["event"] in (LEADS, STANDS_BY)] == [
        STANDS_BY
    ]
    lease = group.lease()
    assert lease is not None
    wait_renewed(group, lease.holder, times=2, timeout=RENEW * 2 + MARGIN)
    assert group[standby].events(LEADS) == []

    killed_at = group.kill9(first)
    second = group.wait_leader(exclude=first, timeout=LEASE + MARGIN)
    took = time.monotonic() - killed_at
    assert second == standby
    assert took <= LEASE + MARGIN
    group.wait_event(second, LEADS, timeout=MARGIN)
    group.wait_ready(timeout=MARGIN, indices=[second])
    print(f"\nreplica {second} led {took:.2f}s after replica {first} was killed (lease {LEASE}s)")


def test_a_frozen_leader_loses_the_lease_and_stands_down_when_it_resumes(
    replicas: ReplicaFactory,
) -> None:
    group = replicas(2, config=CONFIG).start()
    group.wait_ready(timeout=60)
    old = group.wait_leader()
    new = 1 - old

    stopped_at = group.sigstop(old)
    frozen = group.lease()
    assert frozen is not None and frozen.replica == old
    # Alive but silent: the standby must wait for the lease to expire, not steal it.
    assert group.wait_leader(exclude=old, timeout=LEASE + RENEW + MARGIN) == new
    took = time.monotonic() - stopped_at
    taken = group.lease()
    assert taken is not None and taken.replica == new
    acquired = taken.expires_at - timedelta(seconds=LEASE)
    assert acquired >= frozen.expires_at, (acquired, frozen.expires_at)
    group.wait_event(new, LEADS, timeout=MARGIN)

    resumed = datetime.now(UTC)
    group.sigcont(old)
    lost = group.wait_event(old, LOST, timeout=RENEW + MARGIN)
    believed = (wall(lost) - resumed).total_seconds()
    print(
        f"\nreplica {new} led {took:.2f}s after replica {old} froze (lease {LEASE}s); "
        f"resumed, replica {old} stood down after {believed:.2f}s"
    )
    # The old leader stood down at its first lease check after resuming, and did not
    # claim the lease back; the new one keeps it and keeps renewing.
    assert believed <= RENEW + MARGIN
    assert len(group[old].events(LEADS)) == 1
    row = group.lease()
    assert row is not None and row.replica == new
    wait_renewed(group, row.holder, times=2, timeout=RENEW * 2 + MARGIN)
    assert group[new].events(LOST) == []
    assert len(group[old].events(LEADS)) == 1
    group.wait_ready(timeout=MARGIN)
