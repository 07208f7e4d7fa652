"""``make bench``: issue 13's rows B1–B9, each against its floor measured in the same
run, on real ``pira run`` processes and protocol fakes in processes of their own.

    PYTHONPATH=. .venv/bin/python benchmarks/run.py [--quick] [--only B1,B9]
        [--db postgresql+psycopg://…/bench] [--ha-db postgresql+psycopg://…/bench]
        [--set b3_groups=100 …] [--out benchmarks/results.json]

Prints the table (figure, floor, ratio, target, met?, spread min–max over the
repetitions) and writes ``benchmarks/results.json``. ``--db``: every row on that
PostgreSQL database (each repetition in a schema of its own, dropped after);
``--ha-db``: B8's database (two replicas need PostgreSQL; default ``--db``). Without
either, B8 is skipped. See benchmarks/README.md for what each floor is.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import rows_chat, rows_load, rows_timers
from benchmarks.procs import Rep, median, scratch

SIZES: dict[str, Any] = {
    "b1_requests": 200,  # signed slash commands per repetition, to PIRA and to the floor
    "b1_gap": 0.01,  # s between two commands
    "b2_chats": 100,  # private chats, each sending /oncall, /incident #N, /help
    "b3_groups": 200,
    "b3_per_group": 50,
    "b3_senders": 8,
    "b4_steady": 2000,  # reminders due evenly over b4_over seconds
    "b4_over": 10.0,
    "b4_burst": 10000,  # due at once
    "b5_timers": 10000,  # pending through the restart
    "b5_overdue": 50,  # due while the bot was down
    "idle": 5.0,  # s idle before the RSS is read
    "b6_rooms": 20,
    "b6_posts": 30,
    "b7_latency": 0.03,  # s the fake Kubernetes API takes to answer
    "b7_runs": 10,
    "b8_lease": 5.0,  # s, the leader lease
    "b9_alerts": 20,  # alerts, one at a time, per repetition
    # s between alerts: more than Slack's one post a second per channel, so each page
    # finds alice's DM idle (with 0.2 s every page waited ~0.8 s for the one before).
    "b9_gap": 1.2,
}


@dataclass
class Target:
    text: str
    met: Callable[[float, float | None], bool]


@dataclass
class Row:
    id: str
    what: str
    unit: str
    floor_what: str
    target: Target
    reps: int = 3


def targets(pg: bool, size: dict[str, Any]) -> dict[str, Row]:
    lease = float(size["b8_lease"])
    storm, burst = (3000, 8.0) if pg else (5000, 5.0)

    def ratio(limit: float, fig: float, floor: float | None) -> float:
        return fig / floor if floor else math.nan

    rows = [
        Row(
            "B1",
            "Slack slash-command ack p99",
            "ms",
            "bare slack-bolt AsyncApp, ack only",
            Target("≤ 1.5× and ≤ 100 ms", lambda f, b: ratio(1.5, f, b) <= 1.5 and f <= 100),
            reps=10,
        ),
        Row(
            "B2",
            "Telegram commands answered/s (100 chats, limits lifted)",
            "/s",
            "python-telegram-bot Application from a dict",
            Target("≥ 0.7×", lambda f, b: ratio(0.7, f, b) >= 0.7),
        ),
        Row(
            "B3",
            f"alerts/s, {size['b3_groups'] * size['b3_per_group']} alerts in "
            f"{size['b3_groups']} groups, {size['b3_senders']} senders",
            "/s",
            "bare aiohttp endpoint: parse, drop",
            Target(f"≥ {storm}/s, every group 1 incident, 0 lost", lambda f, b: f >= storm),
        ),
        Row(
            "B3p",
            "P0 pages during the B3 storm (Slack on): the last page after its alert",
            "s",
            "—",
            Target("≤ 10 s", lambda f, b: f <= 10),
        ),
        Row(
            "B4a",
            f"timer lateness p99, {size['b4_steady']} over {size['b4_over']:g} s",
            "ms",
            "APScheduler date jobs p99",
            Target("≤ 50 ms", lambda f, b: f <= 50),
        ),
        Row(
            "B4b",
            f"{size['b4_burst']} timers due at once: last fired after",
            "s",
            "APScheduler: as many date jobs at once",
            Target(f"≤ {burst:g} s", lambda f, b: f <= burst),
        ),
        Row(
            "B4c",
            "peak RSS during B4a and B4b",
            "MB",
            "—",
            Target("≤ 300 MB", lambda f, b: f <= 300),
        ),
        Row(
            "B5a",
            f"restart, {size['b5_timers']} pending timers: start → ready",
            "s",
            "start → ready, empty database",
            Target("≤ 5 s, 0 missed, 0 doubled", lambda f, b: f <= 5),
        ),
        Row(
            "B5b",
            f"restart, {size['b5_timers']} pending: start → first overdue fired",
            "s",
            "start → ready, empty database",
            Target("≤ 5 s, 0 missed, 0 doubled", lambda f, b: f <= 5),
        ),
        Row(
            "B6",
            f"delivery, {size['b6_rooms']} rooms × {size['b6_posts']} posts, 1 msg/s a room",
            "× limit",
            "the limit",
            Target("≥ 0.9", lambda f, b: f >= 0.9),
        ),
        Row(
            "B7",
            f"/health median, Kubernetes API {size['b7_latency'] * 1000:g} ms away",
            "ms",
            "one pod-list call",
            Target("≤ 2×", lambda f, b: ratio(2, f, b) <= 2),
        ),
        Row(
            "B8",
            "failover: leader kill -9 → first timer fired by the new leader",
            "s",
            "the lease",
            Target(f"≤ lease + 2 s ({lease + 2:g} s)", lambda f, b: f <= lease + 2),
        ),
        Row(
            "B9",
            "alert received → page in the chat, idle, p99",
            "s",
            "—",
            Target("≤ 1 s", lambda f, b: f <= 1),
        ),
        Row(
            "S1",
            "start-up: start → /readyz, new database",
            "s",
            "—",
            Target("—", lambda f, b: True),
        ),
        Row("S2", "idle RSS of pira run", "MB", "—", Target("—", lambda f, b: True)),
    ]
    return {r.id: r for r in rows}


def measure(
    wanted: list[str],
    folder: Path,
    db: str | None,
    ha_db: str | None,
    quick: bool,
    size: dict[str, Any],
    rows: dict[str, Row],
) -> dict[str, list[Rep] | str]:
    """Every wanted row's repetitions (or why it has none)."""
    found: dict[str, list[Rep] | str] = {}

    def reps(row: str) -> int:
        return 1 if quick else rows[row].reps

    simple: dict[str, Callable[..., list[Rep]]] = {
        "B1": rows_chat.b1,
        "B2": rows_chat.b2,
        "B3": rows_load.b3,
        "B3p": rows_load.b3p,
        "B6": rows_load.b6,
        "B7": rows_load.b7,
        "B9": rows_chat.b9,
    }
    groups = {
        "B1": ["B1"], "B2": ["B2"], "B3": ["B3"], "B3p": ["B3p"], "B4": ["B4a", "B4b", "B4c"],
        "B5": ["B5a", "B5b", "S1", "S2"], "B6": ["B6"], "B7": ["B7"], "B8": ["B8"], "B9": ["B9"],
    }  # fmt: skip
    for group, ids in groups.items():
        if not any(i in wanted or group in wanted for i in ids):
            continue
        started = time.monotonic()
        print(f"… {group}", flush=True)
        try:
            if group in simple:
                found[group] = simple[group](folder, db, reps(group), size)
            elif group == "B4":
                b4 = rows_timers.b4(folder, db, reps("B4a"), size)
                found["B4a"] = b4
                found["B4b"] = [
                    Rep(
                        r.extra["burst_s"],
                        r.extra["burst_floor_s"],
                        ok=not r.extra["burst_missing"],
                    )
                    for r in b4
                ]
                found["B4c"] = [Rep(r.extra["peak_rss_mb"]) for r in b4]
            elif group == "B5":
                found.update(rows_timers.b5(folder, db, reps("B5a"), size))
            elif group == "B8":
                if not ha_db:
                    found["B8"] = "skipped: two replicas need PostgreSQL (--db or --ha-db URL)"
                    print(f"  {found['B8']}")
                    continue
                found["B8"] = rows_timers.b8(folder, ha_db, reps("B8"), size)
        except Exception as exc:
            traceback.print_exc()
            for i in ids:
                found[i] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        print(f"  {group} took {time.monotonic() - started:.0f} s", flush=True)
    return found


def summarize(row: Row, reps: list[Rep] | str) -> dict[str, Any]:
    base: dict[str, Any] = {"id": row.id, "what": row.what, "unit": row.unit}
    base.update(floor_what=row.floor_what, target=row.target.text)
    if isinstance(reps, str):
        return {**base, "met": None, "note": reps}
    figures = [r.figure for r in reps]
    floors = [r.floor for r in reps if r.floor is not None]
    figure = median(figures)
    floor = median(floors) if floors else None
    ok = all(r.ok for r in reps)
    return {
        **base,
        "figure": figure,
        "floor": floor,
        "ratio": figure / floor if floor else None,
        "met": bool(row.target.met(figure, floor) and ok and not math.isnan(figure)),
        "checks_ok": ok,
        "spread": [min(figures), max(figures)],
        "repetitions": [asdict(r) for r in reps],
    }


def fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def table(results: list[dict[str, Any]]) -> str:
    head = "| row | figure | unit | floor | ratio | target | met? | spread (min–max) |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "note" in r:
            note = f"{r['target']} | {r['note']} | — |"
            lines.append(f"| {r['id']} {r['what']} | — | {r['unit']} | — | — | {note}")
            continue
        met = "—" if r["target"] == "—" else "yes" if r["met"] else "NO"
        spread = f"{fmt(r['spread'][0])}–{fmt(r['spread'][1])}"
        ratio = f"{r['ratio']:.2f}×" if r["ratio"] else "—"
        lines.append(
            f"| {r['id']} {r['what']} | {fmt(r['figure'])} | {r['unit']} | {fmt(r['floor'])}"
            f" | {ratio} | {r['target']} | {met} | {spread} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as cpu:
        for line in cpu:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repetition a row")
    parser.add_argument(
        "--only", default="", help="rows, e.g. B1,B9 (B4 = B4a–c, B5 = B5a–b, S1–2)"
    )
    parser.add_argument("--db", default=None, help="a PostgreSQL URL (default: SQLite files)")
    parser.add_argument("--ha-db", default=None, help="PostgreSQL for B8 (default: --db)")
    parser.add_argument("--set", nargs="*", default=[], help="sizes, e.g. b3_groups=100")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results.json"))
    parser.add_argument(
        "--profile", default=None, help="a folder: py-spy records every pira run there"
    )
    args = parser.parse_args()
    if args.profile:
        os.environ["PIRA_BENCH_PROFILE"] = str(Path(args.profile).absolute())
    size = dict(SIZES)
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in size:
            parser.error(f"--set: unknown size {key!r} (known: {', '.join(size)})")
        size[key] = type(size[key])(value)
    pg = bool(args.db and args.db.startswith("postgresql"))
    ha_db = args.ha_db or (args.db if pg else None)
    rows = targets(pg, size)
    wanted = [w.strip() for w in args.only.split(",") if w.strip()] or list(rows)
    info = machine()
    started = time.monotonic()
    found = measure(wanted, scratch(), args.db, ha_db, args.quick, size, rows)
    results = [summarize(rows[i], found[i]) for i in rows if i in found]
    info["load_average_at_end"] = os.getloadavg()
    info["took_s"] = round(time.monotonic() - started)
    print()
    print(table(results))
    report = {
        "machine": info,
        "database": "postgresql" if pg else "sqlite",
        "ha_database": "postgresql" if ha_db else None,
        "quick": args.quick,
        "sizes": size,
        "rows": results,
    }
    Path(args.out).write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(
        f"\n{info['date']}, {info['cpus']} CPUs, Python {info['python']}, took {info['took_s']} s;"
        f" written to {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
