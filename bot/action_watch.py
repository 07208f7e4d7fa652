"""What an accepted action led to: PIRA watches the cluster after /scale, /restart, /rollback,
/kill and /restore until the outcome is clear (executors Ready, the rollout complete, the pod
gone) or ``cluster.watch_outcome`` has passed (stuck), then writes one line — to the
incident's timeline and room when the action belongs to an incident, else to #incidents —
in one transaction through the outbox.

The watch runs as a background task of this process, started once the action was accepted:
the command's answer never waits for it. It is not durable: a restart (or a change of
leader) while a watch runs loses that line, never the action (see README, reliability).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot import audit
from bot.clock import Clock
from bot.incidents import Incidents
from bot.integrations.kube import Cluster, ClusterError, PodInfo
from bot.messages import Destination
from bot.people import Actor
from bot.store import Store

if TYPE_CHECKING:
    from bot.outbox import Poster

log = logging.getLogger("pira.actions")


@dataclass(frozen=True)
class Progress:
    """One look at the cluster: ``done`` (``text`` says what is true now), ``stuck``
    (cannot get better by itself: ``text`` says why), else still going (``text``: where it
    stands, used if the time runs out)."""

    text: str
    done: bool = False
    stuck: bool = False


Check = Callable[[], Awaitable[Progress]]


@dataclass(frozen=True)
class Watched:
    """What a finished watch wrote (for logs and tests)."""

    command: str
    text: str
    ok: bool
    incident: int | None


def took(delta: timedelta) -> str:
    """``48 s``, ``5 min``, ``2 min 5 s``."""
    seconds = max(0, round(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min" + (f" {rest} s" if rest else "")


class OutcomeWatch:
    def __init__(
        self,
        *,
        store: Store,
        incidents: Incidents,
        poster: Poster,
        clock: Clock,
        limit: timedelta,
        notify: Callable[[], None] = lambda: None,
        poll: float = 2.0,
    ) -> None:
        self.store = store
        self.incidents = incidents
        self.poster = poster
        self.clock = clock
        self.limit = limit
        self.poll = poll  # seconds between two looks at the API server
        self._notify = notify
        self._tasks: set[asyncio.Task[Watched | None]] = set()
        self.finished: deque[Watched] = deque(maxlen=100)  # the latest, for logs and tests

    @property
    def enabled(self) -> bool:
        return self.limit > timedelta(0)

    def start(
        self, command: str, check: Check, *, by: Actor, source: str, incident: int | None
    ) -> None:
        """Watch in the background; returns at once. ``incident``: whose timeline gets the
        line (None: #incidents)."""
        if not self.enabled:
            return
        # A context of its own: the command's audit draft (bot/audit.py) must not ride
        # along into the watch's transaction.
        context = contextvars.copy_context()
        context.run(audit.COMMAND.set, None)
        task = asyncio.get_running_loop().create_task(
            self._watch(command, check, by, source, incident, self.clock.now()),
            name=f"watch {command}",
            context=context,
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def idle(self) -> None:
        """Wait until every running watch has written its line."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _watch(
        self,
        command: str,
        check: Check,
        by: Actor,
        source: str,
        incident: int | None,
        started: datetime,
    ) -> Watched | None:
        deadline = started + self.limit
        while True:
            try:
                progress = await check()
            except ClusterError as exc:  # keep looking: the API server may come back
                progress = Progress(f"state unknown ({exc})")
            except Exception:
                log.exception("outcome watch failed", extra={"command": command})
                return None
            now = self.clock.now()
            if progress.done:
                text, ok = f"{command} → {progress.text} after {took(now - started)}", True
            elif progress.stuck or now >= deadline:
                text, ok = f"{command} → {progress.text} (after {took(now - started)})", False
            else:
                await asyncio.sleep(self.poll)
                continue
            done = Watched(command, text, ok, incident)
            try:
                await self.store.run(self._write, done, by, source)
            except Exception:
                log.exception("outcome line not stored", extra={"command": command})
                return None
            self.finished.append(done)
            log.info("action outcome", extra={"command": command, "ok": ok})
            return done

    def _write(self, done: Watched, by: Actor, source: str) -> None:
        """The line on the incident's timeline and in its room, or in #incidents: one
        transaction each way (Incidents.note is one)."""
        outcome = "ok" if done.ok else "stuck"
        if done.incident is not None:
            self.incidents.note(
                number=done.incident,
                text=done.text,
                by=by,
                source=source,
                kind="action",
                outcome=outcome,
            )
            return
        with self.store.transaction() as s:
            self.poster.post(
                s,
                None,
                Destination.incidents(),
                "text",
                {"text": done.text},
                f"watch:{uuid.uuid4().hex}",
                fresh=True,
            )
        self._notify()


# ---- what each action's outcome is ------------------------------------------------------------


def pod_problems(pods: list[PodInfo]) -> str:
    """``2 pods CrashLoopBackOff, 1 pod Pending``: the pods that are not Ready, by why."""
    why: dict[str, int] = {}
    for p in pods:
        if p.ready or p.phase == "Succeeded":
            continue
        reason = p.waiting_reason or p.reason or p.phase
        why[reason] = why.get(reason, 0) + 1
    ranked = sorted(why.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{n} pod{'s' if n > 1 else ''} {reason}" for reason, n in ranked)


def executors_ready(cluster: Cluster, target: int) -> Check:
    """/scale: the StatefulSet's ``target`` executors Ready."""

    async def check() -> Progress:
        ex = await cluster.executors()
        state = f"executors {ex.ready_replicas}/{target} Ready"
        if ex.replicas != target:
            return Progress(f"{state}; desired is now {ex.replicas} (changed since)", stuck=True)
        if ex.ready_replicas >= target and ex.current_replicas <= target:
            return Progress(state, done=True)
        prefix = f"{ex.statefulset}-"
        problems = pod_problems([p for p in await cluster.pods() if p.name.startswith(prefix)])
        return Progress(f"{state}: {problems}" if problems else state)

    return check


def rollout_done(cluster: Cluster) -> Check:
    """/restart, /rollback: ``kubectl rollout status`` of the Spark Connect Deployment."""

    async def check() -> Progress:
        st = await cluster.rollout_status()
        if st.complete:
            return Progress(
                f"rollout of {st.name} complete: {st.ready}/{st.desired} Ready", done=True
            )
        problems = pod_problems(await cluster.pods_selected(st.selector))
        if st.deadline_exceeded:
            return Progress(
                f"rollout stuck: {problems or 'progress deadline exceeded'}", stuck=True
            )
        if problems:
            return Progress(f"rollout stuck: {problems}")
        return Progress(
            f"rollout not complete: {st.updated}/{st.desired} updated, {st.available} available"
        )

    return check


def pod_gone(cluster: Cluster, name: str) -> Check:
    """/kill: the driver pod gone."""

    async def check() -> Progress:
        if await cluster.pod_gone(name):
            return Progress(f"driver pod {name} gone", done=True)
        return Progress(f"driver pod {name} still there")

    return check


def claims_bound(cluster: Cluster, names: list[str]) -> Check:
    """/restore: the restored PersistentVolumeClaims Bound."""

    async def check() -> Progress:
        phases = {c.name: c.phase for c in await cluster.claims()}
        waiting = [f"{n} {phases.get(n, 'missing')}" for n in names if phases.get(n) != "Bound"]
        if not waiting:
            return Progress(f"volume claim(s) {', '.join(names)} Bound", done=True)
        lost = any(phases.get(n) == "Lost" for n in names)
        return Progress(f"volume claim(s) not bound: {', '.join(waiting)}", stuck=lost)

    return check
