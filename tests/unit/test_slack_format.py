"""Slack wire formats: splitting, blocks, slash-command text, and the app manifest."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.adapters import slack_format as fmt
from bot.adapters.slack_manifest import EXAMPLE_URL, events_url, manifest, manifest_yaml
from bot.cli import main
from bot.messages import Button
from handlers import all_commands

ROOT = Path(__file__).resolve().parents[2]


def test_split_keeps_order_and_lines() -> None:
    text = "\n".join(f"{i:03d} " + "y" * 40 for i in range(200))
    parts = fmt.split_message(text, 1000)
    assert all(len(p) <= 1000 for p in parts) and len(parts) > 5
    assert "\n".join(parts) == text
    assert all(p.split("\n")[0][:3].isdigit() for p in parts)  # cut between lines


def test_split_cuts_a_line_longer_than_the_limit() -> None:
    text = "head\n" + "z" * 2500 + "\ntail"
    parts = fmt.split_message(text, 1000)
    assert parts == ["head", "z" * 1000, "z" * 1000, "z" * 500 + "\ntail"]
    assert fmt.split_message("short") == ["short"]


def test_blocks_and_buttons() -> None:
    blocks = fmt.blocks(
        "*hi*", (Button("Confirm", "/confirm AB12CD", "danger"), Button("Cancel", "/cancel X"))
    )
    assert blocks[0] == {"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}
    ids = [e["action_id"] for e in blocks[1]["elements"]]
    assert len(set(ids)) == 2 and all(i.startswith("pira:") for i in ids)
    assert blocks[1]["elements"][0]["style"] == "danger"
    assert "style" not in blocks[1]["elements"][1]
    assert [e["value"] for e in blocks[1]["elements"]] == ["/confirm AB12CD", "/cancel X"]
    long = fmt.blocks("a\n" * 4000)
    assert all(len(b["text"]["text"]) <= fmt.LIMIT for b in long)


def test_metadata_round_trip() -> None:
    message = {"metadata": fmt.post_metadata("inc3:announce@slack", 2)}
    assert fmt.metadata_key(message) == ("inc3:announce@slack", 2)
    assert fmt.metadata_key({"metadata": {"event_type": "other"}}) is None
    assert fmt.metadata_key({}) is None


@pytest.mark.parametrize(
    ("sent", "typed"),
    [
        ("p1 a &lt;!channel&gt; &amp; b", "p1 a <!channel> & b"),
        ("p1 ping <!channel> and <!here>", "p1 ping @channel and @here"),
        ("@x <@U0ALICE|alice> #2", "@x <@U0ALICE> #2"),
        ("see <#C0GENERAL|general> <https://x.example/a?b=1&amp;c=2|link>", "see #general link"),
        ("<https://x.example/a>", "https://x.example/a"),
        ("<!subteam^S01|@oncall> x", "@oncall x"),
    ],
)
def test_command_text(sent: str, typed: str) -> None:
    assert fmt.command_text(sent) == typed


def test_manifest_lists_every_command_with_one_url() -> None:
    m = manifest("https://bot.example.org/")
    url = "https://bot.example.org/slack/events"
    names = {c["command"] for c in m["features"]["slash_commands"]}
    assert names == {f"/{c.name}" for c in all_commands()} | {"/confirm", "/cancel", "/pira"}
    assert {c["url"] for c in m["features"]["slash_commands"]} == {url}
    assert m["settings"]["interactivity"] == {"is_enabled": True, "request_url": url}
    assert m["settings"]["event_subscriptions"]["request_url"] == url
    assert {"commands", "chat:write", "channels:manage", "channels:history"} <= set(
        m["oauth_config"]["scopes"]["bot"]
    )
    assert all(len(c["description"]) <= 100 for c in m["features"]["slash_commands"])
    assert events_url("https://h.example/prefix/slack/events") == (
        "https://h.example/prefix/slack/events"
    )
    with pytest.raises(ValueError):
        events_url("pira.example.com")


def test_deploy_manifest_is_current() -> None:
    shipped = (ROOT / "deploy" / "slack" / "manifest.yaml").read_text()
    assert shipped == manifest_yaml(EXAMPLE_URL), (
        "deploy/slack/manifest.yaml is stale: regenerate it with "
        "`pira slack manifest --url https://pira.example.com > deploy/slack/manifest.yaml`"
    )


def test_cli_prints_the_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slack", "manifest", "--url", "https://chat.example.net"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["settings"]["interactivity"]["request_url"] == (
        "https://chat.example.net/slack/events"
    )
    assert main(["slack", "manifest", "--url", "not a url"]) == 2


def test_prompting_button_carries_command_and_prompt() -> None:
    plain, asking = fmt.blocks(
        "x", (Button("Acknowledge", "/ack #3"), Button("Resolve", "/resolve #3", prompt="Why?"))
    )[-1]["elements"]
    assert (plain["action_id"], plain["value"]) == ("pira:0", "/ack #3")
    assert plain["action_id"].startswith("pira:") and not plain["action_id"].startswith(
        fmt.ASK_ACTION
    )
    assert asking["action_id"] == f"{fmt.ASK_ACTION}1"
    assert fmt.asked(asking["value"]) == ("/resolve #3", "Why?")
    assert fmt.asked("/ack #3") is None and fmt.asked('["x"]') is None


def test_prompt_view_round_trips_and_refuses_oversized_metadata() -> None:
    meta = {"command": "/update #2", "channel": "C1", "thread_ts": "1.2"}
    view = fmt.prompt_view("A label much longer than the title", "What's new on #2?", meta)
    assert len(view["title"]["text"]) <= 24 and view["callback_id"] == fmt.PROMPT_CALLBACK
    (block,) = view["blocks"]
    assert block["label"]["text"] == "What's new on #2?"
    view["state"] = {"values": {block["block_id"]: {"text": {"value": "  all good \n"}}}}
    assert fmt.submitted(view) == (meta, "all good")
    view["state"] = {"values": {block["block_id"]: {"text": {"value": None}}}}
    assert fmt.submitted(view) == (meta, "")
    with pytest.raises(ValueError):
        fmt.prompt_view("x", "y", {"command": "/update " + "é" * 3000})
