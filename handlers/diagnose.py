"""Cluster diagnostics, read-only (issue 5): /health, /pods, /logs, /top, /runbook."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any

from bot.cluster_reads import PodInfo
from bot.domain.categories import parse_category
from bot.domain.incident import InvalidInput
from bot.messages import Reply
from bot.patterns import PATTERNS, Pattern, find_pattern
from bot.router import Args, CommandList, Context, UsageError

commands = CommandList()

MAX_PODS = 30  # pods listed by /pods before "and N more"
MAX_LINES = 40  # log lines shown
MAX_LINE = 300  # characters of one log line
MAX_LOG_CHARS = 2500  # fits one Slack / Telegram message with the header
MAX_TAIL = 1000
ACTIONS = {
    "scale_up": "/scale executors <N> (operator)",
    "restart_connect": "/restart spark-connect (operator)",
    "restore": "/restore <backup> (admin)",
}


def _none(a: Args) -> None:
    a.end()


# ---- /health ------------------------------------------------------------------------------


@commands.add(
    "health",
    usage="/health",
    summary="the platform at a glance: pods, nodes, Spark Connect, executors, metrics, "
    "matching runbook patterns and a severity suggestion",
    parse=_none,
)
async def health(ctx: Context, args: None) -> Reply:
    report = await ctx.services.diagnostics.health()
    patterns = report.data["patterns"]
    if patterns and ctx.room_incident is not None:
        # In an incident's room: what /health saw is kept for the root cause's category.
        with contextlib.suppress(InvalidInput):  # resolved meanwhile: nothing to keep
            await ctx.run(
                ctx.services.incidents.saw_pattern,
                number=ctx.room_incident,
                category=parse_category(patterns[0]["name"]),
                by=ctx.actor,
                source=ctx.source,
            )
    return Reply(template="health", data=report.data, buttons=report.buttons)


# ---- /pods --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodsArgs:
    phase: str | None


def parse_pods(a: Args) -> PodsArgs:
    phase = a.choice("the filter", ("failed", "pending")) if a.peek() else None
    a.end()
    return PodsArgs(phase)


def _pod_row(p: PodInfo) -> dict[str, Any]:
    why = [r for r in (p.reason, p.waiting_reason) if r]
    if p.last_terminated_reason:
        why.append(f"last ended {p.last_terminated_reason}")
    return {
        "name": p.name,
        "phase": p.phase,
        "role": p.role,
        "ready": "ready" if p.ready else "not ready",
        "restarts": p.restarts,
        "why": ", ".join(why),
    }


@commands.add(
    "pods",
    usage="/pods [failed|pending]",
    summary="the platform's pods (kubectl get pods -l <selector>)",
    parse=parse_pods,
)
async def pods(ctx: Context, args: PodsArgs) -> Reply:
    found = await ctx.services.reads.pods(args.phase)  # type: ignore[arg-type]
    return Reply(
        template="pods",
        data={
            "which": f"{args.phase} " if args.phase else "",
            "namespace": found.namespace,
            "selector": found.selector,
            "total": len(found.pods),
            "pods": [_pod_row(p) for p in found.pods[:MAX_PODS]],
            "more": max(0, len(found.pods) - MAX_PODS),
        },
    )


# ---- /logs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogsArgs:
    pod: str | None
    errors: bool
    tail: int | None


def parse_logs(a: Args) -> LogsArgs:
    words = a.rest.split()
    a.rest = ""
    pod: str | None = None
    errors = False
    tail: int | None = None
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--tail" or word.startswith("--tail="):
            if word == "--tail":
                i += 1
                raw = words[i] if i < len(words) else ""
            else:
                raw = word.partition("=")[2]
            if not re.fullmatch(r"\d{1,6}", raw) or not 1 <= int(raw) <= MAX_TAIL:
                raise UsageError(f"--tail takes a number of lines from 1 to {MAX_TAIL}")
            tail = int(raw)
        elif word.lower() == "errors":
            errors = True
        elif word.startswith("-"):
            raise UsageError(f"unknown option {word!r}")
        elif pod is None:
            pod = word
        else:
            raise UsageError(f"unexpected {word!r} (one pod at a time)")
        i += 1
    return LogsArgs(pod, errors, tail)


def _fit(lines: list[str]) -> tuple[list[str], bool]:
    """The last lines that fit one message; True when some were left out."""
    kept: list[str] = []
    size = 0
    for line in reversed(lines[-MAX_LINES:]):
        line = line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…"
        if size + len(line) > MAX_LOG_CHARS:
            break
        kept.append(line)
        size += len(line) + 1
    kept.reverse()
    return kept, len(kept) < len(lines)


@commands.add(
    "logs",
    usage="/logs [pod] [errors] [--tail N]",
    summary="a pod's log, or the error lines of all the platform's pods "
    "(kubectl logs -l <selector> --tail=50 | grep -i error)",
    parse=parse_logs,
)
async def logs(ctx: Context, args: LogsArgs) -> Reply:
    if args.pod is None:
        found = await ctx.services.reads.error_lines(args.tail or 50)
        title = f"Error lines of the platform's pods (last {found.tail} lines of each)"
        empty = f"No error lines in the last {found.tail} lines of the platform's pods."
    else:
        found = await ctx.services.reads.logs(
            args.pod, tail=args.tail or 100, errors_only=args.errors
        )
        what = "error lines" if args.errors else "lines"
        title = f"Log of {found.pod} ({what}, last {found.tail})"
        empty = f"No {what} in the last {found.tail} lines of {found.pod}."
    shown, cut = _fit(found.lines)
    return Reply(
        template="logs",
        data={
            "title": title,
            "empty": empty,
            "lines": shown,
            "cut": cut,
            "total": len(found.lines),
        },
    )


# ---- /top ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopArgs:
    what: str | None


def parse_top(a: Args) -> TopArgs:
    what = a.choice("what", ("pods", "nodes")) if a.peek() else None
    a.end()
    return TopArgs(what)


def _cpu(millicores: int) -> str:
    return f"{millicores}m"


def _mem(n: int) -> str:
    return f"{n / 2**20:.0f}Mi" if n < 2**30 else f"{n / 2**30:.1f}Gi"


@commands.add(
    "top",
    usage="/top [pods|nodes]",
    summary="CPU and memory from metrics-server (kubectl top pods -l <selector>, top nodes)",
    parse=parse_top,
)
async def top(ctx: Context, args: TopArgs) -> Reply:
    usage = await ctx.services.reads.usage(
        pods=args.what in (None, "pods"), nodes=args.what in (None, "nodes")
    )
    data: dict[str, Any] = {"namespace": usage.namespace, "pods": None, "nodes": None,
                            "pods_error": usage.pods_error, "nodes_error": usage.nodes_error,
                            "pods_more": 0}  # fmt: skip
    if usage.pods is not None:
        data["pods"] = [
            {"name": u.name, "cpu": _cpu(u.cpu_millicores), "memory": _mem(u.memory_bytes)}
            for u in usage.pods[:MAX_PODS]
        ]
        data["pods_more"] = max(0, len(usage.pods) - MAX_PODS)
    if usage.nodes is not None:
        data["nodes"] = [
            {
                "name": u.name,
                "cpu": _cpu(u.cpu_millicores),
                "memory": _mem(u.memory_bytes),
                "cpu_percent": None if u.cpu_percent is None else f"{u.cpu_percent:g}",
                "memory_percent": None if u.memory_percent is None else f"{u.memory_percent:g}",
            }
            for u in usage.nodes
        ]
    return Reply(template="top", data=data)


# ---- /runbook -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunbookArgs:
    pattern: str | None


def parse_runbook(a: Args) -> RunbookArgs:
    return RunbookArgs(a.optional_text())


def _row(p: Pattern) -> dict[str, Any]:
    return {
        "key": p.key,
        "name": p.name,
        "detection": p.detection,
        "mitigation": p.mitigation,
        "permanent_fix": p.permanent_fix,
        "action": ACTIONS.get(p.action or ""),
    }


@commands.add(
    "runbook",
    usage="/runbook [pattern]",
    summary="the runbook's common incident patterns: detection, mitigation, permanent fix",
    parse=parse_runbook,
)
async def runbook(ctx: Context, args: RunbookArgs) -> Reply:
    if args.pattern is None:
        rows = [_row(p) for p in PATTERNS]
    else:
        found = find_pattern(args.pattern)
        if found is None:
            names = ", ".join(p.key for p in PATTERNS)
            raise InvalidInput(f"no pattern {args.pattern!r} (one of: {names})")
        rows = [_row(found)]
    return Reply(template="runbook", data={"patterns": rows})
