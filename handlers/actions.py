"""Guarded emergency actions on the cluster (issue 5): /scale, /restart, /rollback, /kill,
/restore.

Every command here is role-guarded and confirmed through the router (``confirm=``): the
prompt is built from the plan the cluster-actions service makes of the cluster's current
state, the handler runs only after the same person confirmed within 60 s. The router
audits each attempt; a failed API call is answered and audited as ``failed`` with the API
server's answer. What an action may do and its timeline lines are the service's
(bot/cluster_actions.py); here commands are parsed and answers worded. How an action
turned out is written later by the service's outcome watch (bot/action_watch.py).
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from bot.cluster_actions import ActionFailed, Where
from bot.messages import Reply
from bot.router import Args, CommandList, Context

commands = CommandList()
T = TypeVar("T")


# ---- shared -------------------------------------------------------------------------------


def _where(ctx: Context, number: int | None) -> Where:
    return Where(ctx.actor, ctx.source, number, ctx.room_incident)


async def _done(command: str, action: Awaitable[T]) -> T | Reply:
    """The action's outcome, or the answer to its failure (audited as ``failed``)."""
    try:
        return await action
    except ActionFailed as exc:
        if exc.unavailable:
            answer = f"{exc}. It may or may not have been applied: check with /health."
        else:
            answer = f"the API server refused it: {exc}."
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
    plan = await ctx.services.actions.plan_scale(args.replicas, _where(ctx, args.number))
    if plan.current is not None:
        now = (
            f"{plan.current.replicas} → {args.replicas} replicas "
            f"({plan.current.ready_replicas} ready now)"
        )
    else:
        now = f"current count unknown ({plan.unknown})"
    return f"Scale the executors (statefulset {plan.statefulset} in {plan.namespace}): {now}."


@commands.add(
    "scale",
    usage="/scale executors <N> [#N]",
    summary="scale the executor StatefulSet within the configured bounds (confirmation)",
    parse=parse_scale,
    role="operator",
    confirm=confirm_scale,
)
async def scale(ctx: Context, args: ScaleArgs) -> Reply:
    done = await _done(
        args.command, ctx.services.actions.scale(args.replicas, _where(ctx, args.number))
    )
    if isinstance(done, Reply):
        return done
    was = "?" if done.before is None else str(done.before)
    return Reply.plain(
        f"Scaled executors (statefulset {done.statefulset}): {was} → {done.after} "
        f"desired replicas. {_watched(ctx)}"
    )


def _watched(ctx: Context) -> str:
    if ctx.services.actions.watch.enabled:
        return "PIRA posts the outcome once it is clear."
    return "/health shows the outcome."


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
    plan = await ctx.services.actions.plan_restart(_where(ctx, args.number))
    now = (
        f"state unknown: {plan.unknown}"
        if plan.unknown
        else f"{plan.ready}/{plan.desired} ready now"
    )
    return (
        f"Rollout-restart deployment {plan.deployment} in {plan.namespace} "
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
    done = await _done(args.command, ctx.services.actions.restart(_where(ctx, args.number)))
    if isinstance(done, Reply):
        return done
    return Reply.plain(
        f"Restarting Spark Connect: deployment {done.deployment} rolls out new pods "
        f"(restartedAt {done.restarted_at}). {_watched(ctx)}"
    )


# ---- /rollback spark-connect --------------------------------------------------------------


@dataclass(frozen=True)
class RollbackArgs:
    number: int | None
    command: str = "/rollback spark-connect"


def parse_rollback(a: Args) -> RollbackArgs:
    number = a.incident()
    a.choice("what to roll back", ("spark-connect",))
    return RollbackArgs(_trailing_incident(a, number))


def _revision(number: int | None, images: tuple[str, ...]) -> str:
    return f"revision {number if number is not None else '?'} ({', '.join(images) or 'no image'})"


async def confirm_rollback(ctx: Context, args: RollbackArgs) -> str:
    plan = await ctx.services.actions.plan_rollback(_where(ctx, args.number))
    namespace = ctx.services.config.cluster.namespace
    return (
        f"Roll back deployment {plan.deployment} in {namespace} from "
        f"{_revision(plan.current_revision, plan.images_from)} to "
        f"{_revision(plan.target_revision, plan.images_to)}: its pods are replaced one by "
        "one; Spark Connect sessions on them end."
    )


@commands.add(
    "rollback",
    usage="/rollback spark-connect [#N]",
    summary="roll the Spark Connect Deployment back to its previous revision (confirmation)",
    parse=parse_rollback,
    role="operator",
    confirm=confirm_rollback,
)
async def rollback(ctx: Context, args: RollbackArgs) -> Reply:
    done = await _done(args.command, ctx.services.actions.rollback(_where(ctx, args.number)))
    if isinstance(done, Reply):
        return done
    return Reply.plain(
        f"Rolled back deployment {done.deployment}: "
        f"{_revision(done.current_revision, done.images_from)} → "
        f"{_revision(done.target_revision, done.images_to)}. {_watched(ctx)}"
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
    plan = await ctx.services.actions.plan_kill(args.pod, _where(ctx, args.number))
    pod = plan.pod
    return (
        f"Delete driver pod {pod.name} in {plan.namespace} ({pod.phase}, restarts "
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
    namespace = await _done(
        args.command, ctx.services.actions.kill(args.pod, _where(ctx, args.number))
    )
    if isinstance(namespace, Reply):
        return namespace
    return Reply.plain(f"Deleted driver pod {args.pod} in {namespace}.")


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
    plan = await ctx.services.actions.plan_restore(args.backup, _where(ctx, args.number))
    listed = ", ".join(f"{o['kind']} {o['metadata']['name']}" for o in plan.objects[:10])
    more = f" and {len(plan.objects) - 10} more" if len(plan.objects) > 10 else ""
    return (
        f"Apply backup {plan.path.name} to namespace {plan.namespace} (server-side apply, "
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
    done = await _done(
        args.command, ctx.services.actions.restore(args.backup, _where(ctx, args.number))
    )
    if isinstance(done, Reply):
        return done
    applied = ", ".join(
        f"{a.kind} {a.name} {'created' if a.created else 'configured'}" for a in done.applied
    )
    return Reply.plain(f"Restored backup {done.path.name} into {done.namespace}: {applied}.")
