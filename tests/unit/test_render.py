"""Per-platform rendering: markup from the templates, user text always escaped."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from bot.logs import Secrets
from bot.people import Directory
from bot.render import Renderer
from bot.settings import Config

CONFIG = Config.model_validate(
    {"people": {"alice": {"name": "Al<i>ce", "slack": "U0ALICE", "telegram": 1001}}}
)


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(tz=ZoneInfo("Europe/Berlin"), mention=Directory(CONFIG).mention)


DATA = {
    "number": 3,
    "title": "<!channel> <b>boom</b> & **bold**",
    "severity": "P0",
    "status_label": "🟡 Investigating",
    "started": "2026-11-30T09:00:00+00:00",
    "commander": "alice",
    "impact": None,
    "next_update": "2026-11-30T09:30:00+00:00",
    "bridge_url": None,
}


def test_slack_escapes_user_text_and_keeps_template_markup(renderer: Renderer) -> None:
    text = renderer.render("slack", "announce", DATA)
    assert text.startswith("🚨 *[P0] Incident: &lt;!channel&gt; &lt;b&gt;boom&lt;/b&gt; &amp; ")
    assert "<!channel>" not in text
    assert "*Status:* 🟡 Investigating" in text
    assert "*Commander:* <@U0ALICE>" in text
    assert "_Follow along in #incident-3_" in text
    assert "10:00 CET" in text  # local time of the configured zone


def test_telegram_is_html_with_escaped_user_text(renderer: Renderer) -> None:
    text = renderer.render("telegram", "announce", DATA)
    assert text.startswith("🚨 <b>[P0] Incident: &lt;!channel&gt; &lt;b&gt;boom&lt;/b&gt; &amp; ")
    assert "<b>Status:</b>" in text
    assert '<a href="tg://user?id=1001">Al&lt;i&gt;ce</a>' in text
    assert "<i>Follow along in #incident-3</i>" in text


def test_console_keeps_the_runbooks_markdown(renderer: Renderer) -> None:
    text = renderer.render("console", "announce", DATA)
    assert text.startswith("🚨 **[P0] Incident: <!channel> <b>boom</b> & **bold****")
    assert "**Status:** 🟡 Investigating" in text
    assert "**Commander:** @alice" in text


def test_bridge_only_when_given(renderer: Renderer) -> None:
    assert "Bridge" not in renderer.render("console", "announce", DATA)
    text = renderer.render("console", "announce", {**DATA, "bridge_url": "https://meet/x"})
    assert "**Bridge:** https://meet/x" in text


def test_secrets_are_scrubbed_from_logs() -> None:
    secrets = Secrets()
    secrets.add("s3cr3t-value")
    assert secrets.scrub("token=s3cr3t-value and xoxb-123-456-abc") == "token=*** and ***"
    assert "s3cr3t" in Secrets().scrub("token=s3cr3t-value")  # one process's, not global
    assert "AAF" not in secrets.scrub(
        "url /bot123456789:AAFabcdefghijklmnopqrstuvwxyz0123456/getMe"
    )
