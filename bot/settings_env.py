"""What comes from the environment (``PIRA_*``, ``KUBECONFIG``): places and secrets."""

from __future__ import annotations

import os
from dataclasses import dataclass

from bot.settings_fields import ConfigError


@dataclass(frozen=True)
class Env:
    """What comes from the environment: places and secrets. Secrets never enter logs."""

    config_path: str | None
    database_url: str
    http_host: str
    http_port: int
    slack_bot_token: str | None
    slack_signing_secret: str | None
    slack_app_token: str | None
    slack_api_url: str | None
    telegram_token: str | None
    telegram_api_url: str | None
    telegram_webhook_url: str | None
    telegram_webhook_secret: str | None
    alertmanager_token: str | None
    prometheus_url: str | None
    # The Kubernetes API: KUBECONFIG, else the in-cluster service account when in a pod.
    kubeconfig: str | None = None
    in_cluster: bool = False
    # Alertmanager's API (silences from chat); PIRA_ALERTMANAGER_URL.
    alertmanager_url: str | None = None
    # Notifiers (bot/notify.py): ntfy, PagerDuty Events API v2 and its webhooks, a
    # signed JSON webhook; PIRA_PUBLIC_URL is where phones reach PIRA's HTTP server.
    ntfy_url: str | None = None
    ntfy_token: str | None = None
    pagerduty_routing_key: str | None = None
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    pagerduty_webhook_secret: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    public_url: str | None = None
    # Where the console writes the files of its posts (relative: to the working directory).
    files_dir: str = "pira-files"
    # The console's log (JSON lines); on its terminal only warnings and errors.
    log_file: str = "pira-console.log"

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> Env:
        e = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = e.get(name, "").strip()
            return value or None

        port = get("PIRA_HTTP_PORT") or "8080"
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError("PIRA_HTTP_PORT", [f"PIRA_HTTP_PORT: not a port number: {port!r}"])
        return cls(
            config_path=get("PIRA_CONFIG"),
            database_url=get("PIRA_DATABASE_URL") or "sqlite:///pira.db",
            http_host=get("PIRA_HTTP_HOST") or "127.0.0.1",
            http_port=int(port),
            slack_bot_token=get("PIRA_SLACK_BOT_TOKEN"),
            slack_signing_secret=get("PIRA_SLACK_SIGNING_SECRET"),
            slack_app_token=get("PIRA_SLACK_APP_TOKEN"),
            slack_api_url=get("PIRA_SLACK_API_URL"),
            telegram_token=get("PIRA_TELEGRAM_TOKEN"),
            telegram_api_url=get("PIRA_TELEGRAM_API_URL"),
            telegram_webhook_url=get("PIRA_TELEGRAM_WEBHOOK_URL"),
            telegram_webhook_secret=get("PIRA_TELEGRAM_WEBHOOK_SECRET"),
            alertmanager_token=get("PIRA_ALERTMANAGER_TOKEN"),
            prometheus_url=get("PIRA_PROMETHEUS_URL"),
            kubeconfig=get("KUBECONFIG"),
            in_cluster=bool(get("KUBERNETES_SERVICE_HOST")),
            alertmanager_url=get("PIRA_ALERTMANAGER_URL"),
            ntfy_url=get("PIRA_NTFY_URL"),
            ntfy_token=get("PIRA_NTFY_TOKEN"),
            pagerduty_routing_key=get("PIRA_PAGERDUTY_ROUTING_KEY"),
            pagerduty_url=get("PIRA_PAGERDUTY_URL") or "https://events.pagerduty.com/v2/enqueue",
            pagerduty_webhook_secret=get("PIRA_PAGERDUTY_WEBHOOK_SECRET"),
            webhook_url=get("PIRA_WEBHOOK_URL"),
            webhook_secret=get("PIRA_WEBHOOK_SECRET"),
            public_url=get("PIRA_PUBLIC_URL"),
            files_dir=get("PIRA_FILES_DIR") or "pira-files",
            log_file=get("PIRA_LOG_FILE") or "pira-console.log",
        )

    @property
    def has_chat_credentials(self) -> bool:
        return bool(self.slack_bot_token or self.telegram_token)

    def __repr__(self) -> str:  # never print a secret by accident
        url = _redact_url(self.database_url)
        return f"Env(database_url={url!r}, http={self.http_host}:{self.http_port})"


def _redact_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable url>"
