"""``pira config init``: a starter configuration file with every key and its default
(the runbook's), each top-level key with a comment. ``pira config check`` passes it
as written, with no error and no warning."""

from __future__ import annotations

import yaml

_COMMENTS = {
    "timezone": "Times in posts and the rotation's handoff time (an IANA name).",
    "severities": (
        "The runbook's severity table. Durations: 30s, 15m, 2h, 1d, 1w (or 1h30m).\n"
        "page_after: null never pages. escalate.to: a role (primary, secondary,\n"
        "team_lead, engineering_manager, cto) or a person of people:. A severity kept\n"
        "here with only some keys keeps the others' defaults."
    ),
    "oncall": (
        "rotation: {members: [alice, bob], every: 7d, handoff: 'mon 09:00',\n"
        "start: 'YYYY-MM-DD'}; every member must be in people:.\n"
        "chain: who is paged next when nobody acknowledges (roles or people)."
    ),
    "people": (
        "name: {name: Full Name, slack: U0…, telegram: 123…, email: …,\n"
        "roles: [responder | operator | admin]}; someone paged needs a slack or telegram id."
    ),
    "roles": "Who holds each role of the chain: {team_lead: carol, engineering_manager: dave}.",
    "default_role": "A role everyone has, configured or not (e.g. responder), or null.",
    "channels": "incidents: the #incidents channel; stakeholders: plain-language news.",
    "bridge_url": "The call's link, shown in P0/P1 posts.",
    "cluster": "The Spark cluster PIRA reads and acts on, and its Prometheus queries.",
    "leader_lease": "With several replicas: how long until a standby takes over.",
    "alertmanager": "POST /alertmanager: who may post, label → severity, auto-resolve.",
    "business": "The business calendar: P3's 'next business day', the review's slot.",
    "pir": "The post-incident review: its hour, window and reminder.",
}


def starter_yaml() -> str:
    from bot.settings import Config

    data = Config().model_dump(mode="json")
    parts = [
        "# PIRA's configuration: every key with its default (the runbook's).\n"
        "# Delete what you keep as is; `pira config check --config FILE` checks it.\n"
    ]
    for key, value in data.items():
        comment = "".join(f"# {line}\n" for line in _COMMENTS.get(key, "").splitlines())
        body = yaml.safe_dump({key: value}, sort_keys=False, allow_unicode=True, width=88)
        parts.append(f"\n{comment}{body}")
    return "".join(parts)
