"""The guarded emergency actions' effects: /scale, /restart, /rollback, /kill, /restore.

The service owns what an action may do and what it did: the bounds (executor
min/max, only the platform's driver pods, only manifests inside the backups
folder), the state a confirmation shows (a *plan*), the API calls, and the
outcome on the incident's timeline. It returns data; the handlers word it. Errors
a person can act on are :class:`InvalidInput`; an API call that failed after the
confirmation is :class:`ActionFailed` (the router audits it as ``failed``).

During an incident (``#N``, the room's, or the only open one) the action and its
result land on the incident's timeline; no incident open is never a reason to
refuse an action. Once an action was accepted, :class:`~bot.action_watch.OutcomeWatch`
watches in the background what it led to and writes that too (the answer does not wait).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot import action_watch
from bot.action_watch import Check, OutcomeWatch
from bot.backups import Backups
from bot.clock import Clock
from bot.diagnostics import Diagnostics
from bot.domain.incident import InvalidInput
from bot.incidents import Incidents
from bot.integrations.kube import (
    AppliedObject,
    Cluster,
    ClusterError,
    ClusterUnavailable,
    ExecutorScale,
    NotFound,
    PodInfo,
    RollbackPlan,
    RollbackRefused,
)
from bot.people import Actor

log = logging.getLogger("pira.actions")


class ActionFailed(Exception):
    """The API call of a confirmed action failed; ``unavailable``: the API server did
    not answer, so the action may or may not have been applied."""

    def __init__(self, error: ClusterError) -> None:
        super().__init__(str(error))
        self.unavailable = isinstance(error, ClusterUnavailable)


@dataclass(frozen=True)
class Where:
    """Who acts, from where, for which incident (``number`` as the person wrote it)."""

    by: Actor
    source: str
    number: int | None
    room_incident: int | None


@dataclass(frozen=True)
class ScalePlan:
    statefulset: str
    namespace: str
    target: int
    current: ExecutorScale | None
    unknown: str | None  # why the current count is unknown


@dataclass(frozen=True)
class ScaleDone:
    statefulset: str
    before: int | None
    after: int


@dataclass(frozen=True)
class RestartPlan:
    deployment: str
    namespace: str
    ready: int | None
    desired: int | None
    unknown: str | None


@dataclass(frozen=True)
class RestartDone:
    deployment: str
    restarted_at: str


@dataclass(frozen=True)
class KillPlan:
    pod: PodInfo
    namespace: str


@dataclass(frozen=True)
class RestorePlan:
    path: Path
    namespace: str
    objects: list[dict[str, Any]]


@dataclass(frozen=True)
class RestoreDone:
    path: Path
    namespace: str
    applied: list[AppliedObject]


class ClusterActions:
    def __init__(
        self,
        *,
        diagnostics: Diagnostics,
        incidents: Incidents,
        clock: Clock,
        run: Callable[..., Awaitable[Any]],
        watch: OutcomeWatch,
    ) -> None:
        self.diagnostics = diagnostics
        self.watch = watch
        self.backups = Backups(diagnostics.settings.backups_dir)
        self.incidents = incidents
        self.clock = clock
        self.run = run  # the incidents' database work, off the event loop (Store.run)

    async def cluster(self) -> Cluster:
        return await self.diagnostics.usable_cluster()

    # ---- /scale executors <N> ---------------------------------------------------------------

    async def plan_scale(self, target: int, where: Where) -> ScalePlan:
        await self._check_incident(where)
        self.diagnostics.check_executors(target)
        cluster = await self.cluster()
        current: ExecutorScale | None = None
        unknown = None
        try:
            current = await cluster.executors()
        except NotFound as exc:
            raise InvalidInput(f"{exc} in namespace {cluster.namespace}") from None
        except ClusterError as exc:
            unknown = str(exc)
        if current is not None and current.replicas == target:
            raise InvalidInput(f"executors are already at {target}; nothing to do")
        return ScalePlan(cluster.executor_statefulset, cluster.namespace, target, current, unknown)

    async def scale(self, target: int, where: Where) -> ScaleDone:
        self.diagnostics.check_executors(target)  # bounds may have changed since the plan
        cluster = await self.cluster()
        command = f"/scale executors {target}"
        try:
            before: int | None = (await cluster.executors()).replicas
        except ClusterError:
            before = None  # the scale itself decides; the outcome says "unknown"
        try:
            stored = await cluster.scale_executors(target)
        except ClusterError as exc:
            raise await self._failed(where, command, exc) from None
        was = "?" if before is None else str(before)
        await self._note(where, f"{command} by {where.by.handle}: executors {was} → {stored}")
        await self._watch(where, command, action_watch.executors_ready(cluster, stored))
        return ScaleDone(cluster.executor_statefulset, before, stored)

    # ---- /restart spark-connect -------------------------------------------------------------

    async def plan_restart(self, where: Where) -> RestartPlan:
        await self._check_incident(where)
        cluster = await self.cluster()
        try:
            status = await cluster.connect_status()
        except NotFound as exc:
            raise InvalidInput(f"{exc} in namespace {cluster.namespace}") from None
        except ClusterError as exc:
            return RestartPlan(cluster.connect_deployment, cluster.namespace, None, None, str(exc))
        return RestartPlan(
            cluster.connect_deployment, cluster.namespace, status.ready, status.desired, None
        )

    async def restart(self, where: Where) -> RestartDone:
        cluster = await self.cluster()
        command = "/restart spark-connect"
        try:
            stamp = await cluster.restart_connect(now=self.clock.now())
        except ClusterError as exc:
            raise await self._failed(where, command, exc) from None
        name = cluster.connect_deployment
        await self._note(where, f"{command} by {where.by.handle}: {name} restarted at {stamp}")
        await self._watch(where, command, action_watch.rollout_done(cluster))
        return RestartDone(name, stamp)

    # ---- /rollback spark-connect ------------------------------------------------------------

    async def plan_rollback(self, where: Where) -> RollbackPlan:
        """The previous revision, or InvalidInput (paused, none, already there)."""
        await self._check_incident(where)
        cluster = await self.cluster()
        try:
            return await cluster.rollback_plan()
        except NotFound as exc:
            raise InvalidInput(f"{exc} in namespace {cluster.namespace}") from None
        except ClusterError as exc:
            raise InvalidInput(str(exc)) from None

    async def rollback(self, where: Where) -> RollbackPlan:
        """``kubectl rollout undo`` of Spark Connect (bot/integrations/kube_rollback.py)."""
        cluster = await self.cluster()
        command = "/rollback spark-connect"
        try:
            done = await cluster.rollback_connect()
        except RollbackRefused as exc:  # found at the moment of the rollback: nothing sent
            raise InvalidInput(str(exc)) from None
        except ClusterError as exc:
            raise await self._failed(where, command, exc) from None
        was = f"revision {done.current_revision or '?'} ({', '.join(done.images_from)})"
        now = f"revision {done.target_revision} ({', '.join(done.images_to)})"
        await self._note(where, f"{command} by {where.by.handle}: {done.deployment} {was} → {now}")
        await self._watch(where, command, action_watch.rollout_done(cluster))
        return done

    # ---- /kill <driver-pod> -----------------------------------------------------------------

    async def plan_kill(self, name: str, where: Where) -> KillPlan:
        """Only one of the platform's driver pods, checked before even asking for a
        confirmation (RBAC cannot restrict deletes by label); :meth:`kill` checks again
        at the moment of the delete, with the pod's uid."""
        await self._check_incident(where)
        cluster = await self.cluster()
        try:
            platform = {p.name: p for p in await cluster.pods()}
            pod = platform.get(name) or await cluster.pod(name)
        except NotFound:
            raise InvalidInput(f"there is no pod {name} in namespace {cluster.namespace}") from None
        except ClusterError as exc:
            raise InvalidInput(str(exc)) from None
        if pod.name not in platform:
            raise InvalidInput(
                f"pod {pod.name} is not one of the platform's pods ({cluster.selector}); "
                "/kill only deletes its driver pods"
            )
        if pod.role != "driver":
            raise InvalidInput(
                f"pod {pod.name} is not a Spark driver (spark-role: {pod.role or 'none'}); "
                "/kill only deletes driver pods"
            )
        return KillPlan(pod, cluster.namespace)

    async def kill(self, name: str, where: Where) -> str:
        """Delete the driver pod; returns the namespace it was in."""
        cluster = await self.cluster()
        try:
            await cluster.kill_driver(name)
        except ClusterError as exc:
            raise await self._failed(where, f"/kill {name}", exc) from None
        await self._note(where, f"/kill {name} by {where.by.handle}: driver pod deleted")
        await self._watch(where, f"/kill {name}", action_watch.pod_gone(cluster, name))
        return cluster.namespace

    # ---- /restore <backup> ------------------------------------------------------------------

    async def plan_restore(self, backup: str, where: Where) -> RestorePlan:
        await self._check_incident(where)
        path = self.backups.backup_path(backup)
        cluster = await self.cluster()
        try:
            objects = await asyncio.to_thread(cluster.read_manifest, path)
        except ClusterError as exc:
            raise InvalidInput(str(exc)) from None
        if not objects:
            raise InvalidInput(f"backup {backup} contains no object")
        return RestorePlan(path, cluster.namespace, objects)

    async def restore(self, backup: str, where: Where) -> RestoreDone:
        path = self.backups.backup_path(backup)
        cluster = await self.cluster()
        try:
            applied = await cluster.apply_manifest(path)
        except ClusterError as exc:
            raise await self._failed(where, f"/restore {backup}", exc) from None
        done = ", ".join(
            f"{a.kind} {a.name} {'created' if a.created else 'configured'}" for a in applied
        )
        await self._note(where, f"/restore {backup} by {where.by.handle}: {done}")
        claims = [a.name for a in applied if a.kind == "PersistentVolumeClaim"]
        if claims:  # other kinds are in place once applied; a claim must still bind
            await self._watch(
                where, f"/restore {backup}", action_watch.claims_bound(cluster, claims)
            )
        return RestoreDone(path, cluster.namespace, applied)

    # ---- the incident's timeline --------------------------------------------------------------

    async def _check_incident(self, where: Where) -> None:
        if where.number is not None:
            await self.run(self.incidents.get, where.number)  # "there is no incident #N"

    def _incident_for(self, where: Where) -> int | None:
        """The incident an action belongs to: ``#N``, else the room's or the only open one."""
        if where.number is not None:
            return where.number
        candidates = (
            [where.room_incident]
            if where.room_incident is not None
            else self.incidents.open_numbers()
        )
        if len(candidates) != 1:
            return None
        try:
            return candidates[0] if self.incidents.get(candidates[0]).is_open else None
        except InvalidInput:
            return None

    async def _note(self, where: Where, text: str, outcome: str = "ok") -> None:
        """The action's line on its incident's timeline (the command's audit row joins
        that commit)."""
        try:
            await self.run(self._note_now, where, text, outcome)
        except Exception:  # the action is done; a timeline problem must not hide that
            log.exception("timeline note failed", extra={"number": where.number})

    def _note_now(self, where: Where, text: str, outcome: str) -> None:
        incident = self._incident_for(where)
        if incident is not None:
            self.incidents.note(
                number=incident,
                text=text,
                by=where.by,
                source=where.source,
                kind="action",
                outcome=outcome,
            )

    async def _watch(self, where: Where, command: str, check: Check) -> None:
        """Watch what the action led to, in the background (see bot/action_watch.py)."""
        if not self.watch.enabled:
            return
        try:
            incident = await self.run(self._incident_for, where)
        except Exception:  # the action is done; not knowing its incident must not hide that
            log.exception("incident of an action unknown", extra={"number": where.number})
            incident = None
        self.watch.start(command, check, by=where.by, source=where.source, incident=incident)

    async def _failed(self, where: Where, command: str, exc: ClusterError) -> ActionFailed:
        await self._note(where, f"{command} by {where.by.handle} failed: {exc}", "failed")
        return ActionFailed(exc)
