"""Guarded emergency actions on the cluster (issue 5): /scale, /restart, /kill, /restore.

Every command here is role-guarded and confirmed through the router (``confirm=``): the
prompt is built from the cluster's current state, the handler runs only after the same
person confirmed within 60 s. The router audits each attempt; a failed API call is audited
here as ``failed`` with the API server's answer. During an incident (``#N``, the room's, or
the only open one) the action and its result land on the incident's timeline; no incident
open is never a reason to refuse an action.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from bot.domain.incident import InvalidInput
from bot.integrations.kube import (
    ClusterError,
    ClusterUnavailable,
    ExecutorScale,
    NotFound,
)
from bot.messages import Reply
from bot.router import Args, CommandList, Context
from handlers.diagnose import cluster_of

commands = CommandList()
log = logging.getLogger("pira.actions")


# ---- shared -------------------------------------------------------------------------------


def _check_incident(ctx: Context, number: int | None) -> None:
    if number is not None:
        ctx.app.incidents.get(number)  # raises "there is no incident #N"


def _incident_for(ctx: Context, number: int | None) -> int | None:
    """The incident an action belongs to: ``#N``, else the room's or the only open one."""
    if number is not None:
        return number
    candidates = (
        [ctx.room_incident] if ctx.room_incident is not None else ctx.app.incidents.open_numbers()
    )
    if len(candidates) != 1:
        return None
    try:
        return candidates[0] if ctx.app.incidents.get(candidates[0]).is_open else None
    except InvalidInput:
        return None


def _note(ctx: Context, number: int | None, text: str) -> None:
    incident = _incident_for(ctx, number)
    if incident is None:
        return
    try:
        ctx.app.incidents.note(
            number=incident, text=text, by=ctx.actor, source=ctx.source, kind="action"
        )
    except Exception:  # the action is done; a timeline problem must not hide that
        log.exception("timeline note failed", extra={"incident": incident})


def _failed(ctx: Context, number: int | None, command: str, exc: ClusterError) -> Reply:
    """Tell the timeline and the person; the router audits it as ``failed`` with this
    answer."""
    if isinstance(exc, ClusterUnavailable):
        answer = f"{exc}. It may or may not have been applied: check with /health."
    else:
        answer = f"the API server refused it: {exc}."
    _note(ctx, number, f"{command} by {ctx.actor.handle} failed: {exc}")
    return Reply.error(f"{command} failed; {answer}", outcome="failed")


def _trailing_incident(a: Args, number: int | None) -> int | None:
    """``#N`` may come first or last."""
    if number is None and a.peek() is not None and a.rest.startswith("#"):
        number = a.incident()
    a.end()
    return number


# ---- /scale executors <N> -----------------------------------------------------------------


@dataclass(frozen=True)
class ScaleArgs:
    number: int | None
    replicas: int

    @property
    def command(self) -> str:
        return f"/scale executors {self.replicas}"


def parse_scale(a: Args) -> ScaleArgs:
    number = a.incident()
    a.choice("what to scale", ("executors",))
    replicas = a.integer("the executor count")
    return ScaleArgs(_trailing_incident(a, number), replicas)


async def confirm_scale(ctx: Context, args: ScaleArgs) -> str:
    _check_incident(ctx, args.number)
    ctx.app.diagnostics.check_executors(args.replicas)
    cluster = await cluster_of(ctx)
    current: ExecutorScale | None = None
    try:
        current = await cluster.executors()
    except NotFound as exc:
        raise InvalidInput(f"{exc} in namespace {cluster.namespace}") from None
    except ClusterError as exc:
        now = f"current count unknown ({exc})"
    if current is not None:
        if current.replicas == args.replicas:
            raise InvalidInput(f"executors are already at {args.replicas}; nothing to do")
        now = f"{current.replicas} → {args.replicas} replicas ({current.ready_replicas} ready now)"
    return (
        f"Scale the executors (statefulset {cluster.executor_statefulset} in "
        f"{cluster.namespace}): {now}."
    )


@commands.add(
    "scale",
    usage="/scale executors <N> [#N]",
    summary="scale the executor StatefulSet within the configured bounds (confirmation)",
    parse=parse_scale,
    role="operator",
    confirm=confirm_scale,
)
async def scale(ctx: Context, args: ScaleArgs) -> Reply:
    ctx.app.diagnostics.check_executors(args.replicas)
    cluster = await cluster_of(ctx)
    try:
        before: int | None = (await cluster.executors()).replicas
    except ClusterError:
        before = None  # the scale itself decides; the reply says "unknown"
    try:
        stored = await cluster.scale_executors(args.replicas)
    except ClusterError as exc:
        return _failed(ctx, args.number, args.command, exc)
    was = "?" if before is None else str(before)
    text = (
        f"Scaled executors (statefulset {cluster.executor_statefulset}): {was} → {stored} "
        "desired replicas. /health shows them becoming ready."
    )
    _note(ctx, args.number, f"{args.command} by {ctx.actor.handle}: executors {was} → {stored}")
    return Reply.plain(text)


# ---- /restart spark-connect ---------------------------------------------------------------


@dataclass(frozen=True)
class RestartArgs:
    number: int | None
    command: str = "/restart spark-connect"


def parse_restart(a: Args) -> RestartArgs:
    number = a.incident()
    a.choice("what to restart", ("spark-connect",))
    return RestartArgs(_trailing_incident(a, number))


async def confirm_restart(ctx: Context, args: RestartArgs) -> str:
    _check_incident(ctx, args.number)
    cluster = await cluster_of(ctx)
    try:
        status = await cluster.connect_status()
        now = f"{status.ready}/{status.desired} ready now"
    except NotFound as exc:
        raise InvalidInput(f"{exc} in namespace {cluster.namespace}") from None
    except ClusterError as exc:
        now = f"state unknown: {exc}"
    return (
        f"Rollout-restart deployment {cluster.connect_deployment} in {cluster.namespace} "
        f"({now}): its pods are replaced one by one; Spark Connect sessions on them end."
    )


@commands.add(
    "restart",
    usage="/restart spark-connect [#N]",
    summary="rollout-restart the Spark Connect Deployment (confirmation)",
    parse=parse_restart,
    role="operator",
    confirm=confirm_restart,
)
async def restart(ctx: Context, args: RestartArgs) -> Reply:
    cluster = await cluster_of(ctx)
    try:
        stamp = await cluster.restart_connect(now=ctx.app.clock.now())
    except ClusterError as exc:
        return _failed(ctx, args.number, args.command, exc)
    name = cluster.connect_deployment
    _note(ctx, args.number, f"{args.command} by {ctx.actor.handle}: {name} restarted at {stamp}")
    return Reply.plain(
        f"Restarting Spark Connect: deployment {name} rolls out new pods "
        f"(restartedAt {stamp}). /health shows when they are ready."
    )


# ---- /kill <driver-pod> -------------------------------------------------------------------


@dataclass(frozen=True)
class KillArgs:
    number: int | None
    pod: str

    @property
    def command(self) -> str:
        return f"/kill {self.pod}"


def parse_kill(a: Args) -> KillArgs:
    number = a.incident()
    pod = a.word("the driver pod")
    return KillArgs(_trailing_incident(a, number), pod)


async def confirm_kill(ctx: Context, args: KillArgs) -> str:
    _check_incident(ctx, args.number)
    cluster = await cluster_of(ctx)
    try:
        # The platform's pods (namespace + selector): RBAC cannot restrict deletes by label,
        # so the bot refuses anything else before even asking for confirmation.
        platform = {p.name: p for p in await cluster.pods()}
        pod = platform.get(args.pod) or await cluster.pod(args.pod)
    except NotFound:
        raise InvalidInput(f"there is no pod {args.pod} in namespace {cluster.namespace}") from None
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
    return (
        f"Delete driver pod {pod.name} in {cluster.namespace} ({pod.phase}, restarts "
        f"{pod.restarts})? Its Spark job stops."
    )


@commands.add(
    "kill",
    usage="/kill <driver-pod> [#N]",
    summary="delete one Spark driver pod of the platform (confirmation)",
    parse=parse_kill,
    role="operator",
    confirm=confirm_kill,
)
async def kill(ctx: Context, args: KillArgs) -> Reply:
    cluster = await cluster_of(ctx)
    try:
        await cluster.kill_driver(args.pod)
    except ClusterError as exc:
        return _failed(ctx, args.number, args.command, exc)
    _note(ctx, args.number, f"{args.command} by {ctx.actor.handle}: driver pod deleted")
    return Reply.plain(f"Deleted driver pod {args.pod} in {cluster.namespace}.")


# ---- /restore <backup> --------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreArgs:
    number: int | None
    backup: str

    @property
    def command(self) -> str:
        return f"/restore {self.backup}"


def parse_restore(a: Args) -> RestoreArgs:
    number = a.incident()
    backup = a.word("the backup name")
    return RestoreArgs(_trailing_incident(a, number), backup)


async def confirm_restore(ctx: Context, args: RestoreArgs) -> str:
    _check_incident(ctx, args.number)
    path = ctx.app.diagnostics.backup_path(args.backup)
    cluster = await cluster_of(ctx)
    try:
        objects = await asyncio.to_thread(cluster.read_manifest, path)
    except ClusterError as exc:
        raise InvalidInput(str(exc)) from None
    if not objects:
        raise InvalidInput(f"backup {args.backup} contains no object")
    listed = ", ".join(f"{o['kind']} {o['metadata']['name']}" for o in objects[:10])
    more = f" and {len(objects) - 10} more" if len(objects) > 10 else ""
    return (
        f"Apply backup {path.name} to namespace {cluster.namespace} (server-side apply, "
        f"overwriting other managers' fields): {listed}{more}."
    )


@commands.add(
    "restore",
    usage="/restore <backup> [#N]",
    summary="apply a backup manifest from the configured backups folder (admin, confirmation)",
    parse=parse_restore,
    role="admin",
    confirm=confirm_restore,
)
async def restore(ctx: Context, args: RestoreArgs) -> Reply:
    path = ctx.app.diagnostics.backup_path(args.backup)
    cluster = await cluster_of(ctx)
    try:
        applied = await cluster.apply_manifest(path)
    except ClusterError as exc:
        return _failed(ctx, args.number, args.command, exc)
    done = ", ".join(
        f"{a.kind} {a.name} {'created' if a.created else 'configured'}" for a in applied
    )
    _note(ctx, args.number, f"{args.command} by {ctx.actor.handle}: {done}")
    return Reply.plain(f"Restored backup {path.name} into {cluster.namespace}: {done}.")
