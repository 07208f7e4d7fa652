"""The monthly report's chart: incidents per week by severity (stacked bars) and MTTR
per severity against the runbook's targets, as one PNG of a fixed size.

Matplotlib's object API with the Agg canvas, never pyplot: no global figure state,
no GUI backend, safe on the store's threads (rendering is CPU work: it never runs on
the event loop)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from bot.domain.severity import SEVERITIES
from bot.domain.targets import MTTR_TARGETS

if TYPE_CHECKING:
    from bot.report import MonthReport

WIDTH, HEIGHT, DPI = 12, 6, 100  # 1200 × 600 px
COLORS = {"P0": "#c62828", "P1": "#ef6c00", "P2": "#1565c0", "P3": "#78909c"}


def render_chart(report: MonthReport) -> bytes:
    """The PNG (1200 × 600 px)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, HEIGHT), dpi=DPI)
    FigureCanvasAgg(fig)
    weekly, mttr = fig.subplots(1, 2)
    title = f"PIRA incident report {report.month.label}"
    fig.suptitle(title + (" (so far)" if report.month.so_far else ""))

    labels = [label for label, _ in report.weeks]
    x = list(range(len(labels)))
    bottom = [0] * len(labels)
    for sev in SEVERITIES:
        heights = [counts[sev] for _, counts in report.weeks]
        weekly.bar(x, heights, bottom=bottom, color=COLORS.get(sev), label=sev)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    weekly.set_xticks(x, labels)
    weekly.set_xlabel("week from (month-day)")
    weekly.set_ylim(0, max([*bottom, 0]) + 1)  # headroom for the legend
    weekly.set_ylabel("incidents")
    weekly.set_title("Incidents per week by severity")
    weekly.yaxis.get_major_locator().set_params(integer=True)
    weekly.legend(loc="upper right")

    minutes = [
        (v.total_seconds() / 60 if (v := report.mttr[sev]) is not None else 0.0)
        for sev in SEVERITIES
    ]
    xs = list(range(len(SEVERITIES)))
    mttr.bar(xs, minutes, color=[COLORS.get(sev) for sev in SEVERITIES])
    for i, sev in enumerate(SEVERITIES):
        if report.mttr[sev] is None:
            mttr.annotate("none resolved", (i, 0), ha="center", va="bottom", fontsize=9)
        target = MTTR_TARGETS.get(sev)
        if target is not None:
            mttr.hlines(
                target.total_seconds() / 60,
                i - 0.45,
                i + 0.45,
                colors="black",
                linestyles="dashed",
                label="target" if i == 0 else None,
            )
    mttr.set_xticks(xs, list(SEVERITIES))
    top = max([*minutes, *(t.total_seconds() / 60 for t in MTTR_TARGETS.values())])
    mttr.set_ylim(0, top * 1.2)
    mttr.set_ylabel("minutes, detection → resolution")
    mttr.set_title("MTTR per severity against its target")
    mttr.legend(loc="upper right")

    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI)
    return out.getvalue()
