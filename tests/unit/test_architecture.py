"""The shape of the code (../shared/ARCHITECTURE.md, issue 10), enforced on the source.

A message flows one way: adapter → router → handler → service → outbox → render →
adapter's sender. These tests read every module's imports (type-only ones count)
and fail when a rule is broken. That no database call runs on the event loop is
checked at run time instead (bot/store/db.py; tests/integration/test_event_loop.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {
    "bot/incidents.py",
    "bot/incident_records.py",
    "bot/views.py",
    "bot/oncall.py",
    "bot/timers.py",
    "bot/timer_plan.py",
    "bot/timer_kinds.py",
    "bot/timer_wake.py",
    "bot/timer_notify.py",
    "bot/calendar_posts.py",
    "bot/contacts.py",
    "bot/handoff_test.py",
    "bot/outbox.py",
    "bot/diagnostics.py",
    "bot/cluster_actions.py",
    "bot/cluster_reads.py",
    "bot/triage.py",
    "bot/action_watch.py",
    "bot/leader.py",
    "bot/backups.py",
    "bot/alert_batches.py",
    "bot/arrival.py",
    "bot/alert_mapping.py",
    "bot/alert_groups.py",
    "bot/maintenance.py",
    "bot/silences.py",
    "bot/watchdog.py",
    "bot/notify.py",
    "bot/rooms.py",
    "bot/audit.py",
    "bot/incident_posts.py",
    "bot/metrics.py",
    "bot/delivery.py",
    "bot/delivery_fold.py",
    "bot/incident_change.py",
    "bot/action_items.py",
    "bot/files.py",
    # (aftermath services: one line each)
    "bot/reviews.py",
    "bot/report.py",
    "bot/report_chart.py",
    "bot/postmortems.py",
    "bot/postmortem_text.py",
}
SDKS = ("telegram", "slack_sdk", "slack_bolt", "kubernetes", "prometheus_api_client")
MAX_LINES = 400


def modules(*folders: str) -> list[Path]:
    found: list[Path] = []
    for folder in folders:
        found.extend(sorted((ROOT / folder).rglob("*.py")))
    return [p for p in found if "migrations" not in p.parts]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def imported(path: Path) -> set[str]:
    """Every module name a file imports, at any level (``if TYPE_CHECKING:`` too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def uses(names: set[str], *prefixes: str) -> list[str]:
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes))


def test_handlers_use_services_only() -> None:
    for path in modules("handlers"):
        names = imported(path)
        assert uses(names, "bot.integrations", "bot.store", "sqlalchemy", *SDKS) == [], rel(path)
        assert uses(names, "bot.app") == [], f"{rel(path)} imports the App"


def test_services_get_their_collaborators_not_the_app() -> None:
    for name in sorted(SERVICES):
        names = imported(ROOT / name)
        assert uses(names, "bot.app") == [], f"{name} imports the App"
        assert uses(names, "bot.router", "handlers", "bot.adapters") == [], name


def test_services_return_data_not_replies() -> None:
    for name in sorted(SERVICES):
        source = (ROOT / name).read_text()
        assert "bot.messages import" not in source or "Reply" not in source, name


def test_only_the_composition_root_knows_the_app() -> None:
    """bot/app.py builds and wires; bot/cli.py starts it. Nothing else receives or
    imports the App (type-only imports count)."""
    given = {
        rel(p)
        for p in modules("bot", "handlers")
        if rel(p) not in ("bot/app.py", "bot/cli.py") and uses(imported(p), "bot.app")
    }
    assert given == set(), f"given the App: {sorted(given)}"


def test_adapters_translate_only() -> None:
    """Adapters hold no SQL: the room store and the services do."""
    with_sql = {
        rel(p) for p in modules("bot/adapters") if uses(imported(p), "sqlalchemy", "bot.store")
    }
    assert with_sql == set(), f"SQL in adapters: {sorted(with_sql)}"


def test_no_big_rooms() -> None:
    long = {
        rel(p): n
        for p in modules("bot", "handlers")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"over {MAX_LINES} lines: {long}"


def test_one_severity_scale() -> None:
    for path in modules("bot", "handlers"):
        if rel(path) == "bot/domain/severity.py":
            continue
        source = path.read_text()
        assert '"P0", "P1", "P2", "P3"' not in source, f"{rel(path)} spells the scale out again"
