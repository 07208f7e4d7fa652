"""``pira run | console | config check | config init | oncall export | slack manifest | report``."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

from bot import logs
from bot.logs import Secrets
from bot.messages import Destination
from bot.settings import Config, ConfigError, Env, load_config

log = logging.getLogger("pira")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pira", description="Incident-response chat-ops bot")
    parser.add_argument("--config", help="YAML configuration (default: $PIRA_CONFIG)")
    # --config after the subcommand too (``pira report --config x.yaml``): every leaf
    # parser accepts it, without a default that would hide the one given before.
    late = argparse.ArgumentParser(add_help=False)
    late.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common = [late]
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the bot: chat adapters, HTTP server, timers", parents=common)
    console = sub.add_parser("console", help="drive the bot from this terminal", parents=common)
    console.add_argument(
        "--as",
        dest="as_user",
        metavar="USER",
        help="act as this configured person, with their roles",
    )
    config = sub.add_parser("config", help="configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser(
        "check", help="validate and print the tables in force", parents=common
    )
    check.add_argument("--strict", action="store_true", help="warnings are errors too")
    init = config_sub.add_parser("init", help="write a commented starter pira.yaml")
    init.add_argument("--out", default="pira.yaml", help="where to write it (default pira.yaml)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    oncall = sub.add_parser("oncall", help="on-call rotation")
    oncall_sub = oncall.add_subparsers(dest="oncall_command", required=True)
    export = oncall_sub.add_parser("export", help="write the rotation as iCalendar", parents=common)
    export.add_argument("--weeks", type=int, default=12)
    export.add_argument("--out", default="rotation.ics")
    slack = sub.add_parser("slack", help="Slack app")
    slack_sub = slack.add_subparsers(dest="slack_command", required=True)
    slack_manifest = slack_sub.add_parser(
        "manifest", help="print the Slack app manifest", parents=common
    )
    slack_manifest.add_argument(
        "--url", required=True, help="the bot's public base URL, e.g. https://pira.example.com"
    )
    report = sub.add_parser(
        "report", help="the monthly incident report: table on stdout, chart as PNG", parents=common
    )
    report.add_argument("--month", help="YYYY-MM (default: this month so far)")
    report.add_argument("--out", required=True, help="where to write the chart (PNG)")
    return parser


def _load(args: argparse.Namespace, warnings: list[str]) -> tuple[Config, Env, str | None]:
    env = Env.from_environ()
    path = args.config or env.config_path
    strict = bool(getattr(args, "strict", False))
    config = load_config(path, warnings=warnings, strict=strict)
    from bot.notify import missing_environment

    missing = missing_environment(config, env)  # a notifier named without its variables
    if missing:
        raise ConfigError(path or "the runbook's defaults", missing)
    return config, env, path


def main(argv: list[str] | None = None) -> int:
    """``pira …``; a broken pipe on stdout (``pira config check | head -2``) ends quietly."""
    try:
        code = _main(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # Whatever is still buffered cannot be written: point stdout at /dev/null so
        # that the interpreter's final flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "config" and args.config_command == "init":
        return config_init(Path(args.out), force=args.force)
    warnings: list[str] = []
    try:
        config, env, path = _load(args, warnings)
    except ConfigError as exc:
        print(f"pira: the configuration {exc.source} is not valid:", file=sys.stderr)
        for error in exc.errors:
            print(f"  - {error}", file=sys.stderr)
        for warning in exc.warnings:
            print(f"  - warning: {warning}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"pira: warning: {warning}", file=sys.stderr)
    # The console's logs go to a file: its terminal is for the posts (and warnings).
    console = args.command == "console" or (
        args.command == "run" and not env.has_chat_credentials and sys.stdin.isatty()
    )
    log_file = Path(env.log_file).absolute() if console else None
    secrets = logs.setup(log_file=log_file)
    for secret in (
        env.slack_bot_token,
        env.slack_signing_secret,
        env.slack_app_token,
        env.telegram_token,
        env.telegram_webhook_secret,
        env.alertmanager_token,
        env.ntfy_token,
        env.pagerduty_routing_key,
        env.pagerduty_webhook_secret,
        env.webhook_secret,
    ):
        secrets.add(secret)
    if args.command == "config":
        return config_check(config, path, warnings)
    if args.command == "oncall":
        return oncall_export(config, weeks=args.weeks, out=Path(args.out))
    if args.command == "slack":
        return slack_manifest(args.url)
    if args.command == "report":
        return report(config, env, month=args.month, out=Path(args.out))
    try:
        as_user = args.as_user if args.command == "console" else None
        return asyncio.run(
            _serve(config, env, secrets, console=console, as_user=as_user, config_path=args.config)
        )
    except KeyboardInterrupt:
        return 130


def config_check(config: Config, path: str | None, warnings: list[str]) -> int:
    from bot.people import Directory
    from bot.render import Renderer
    from handlers.meta import tables

    renderer = Renderer(tz=config.tz, mention=Directory(config).mention)
    if path is None:
        print(
            "No configuration file (--config FILE or $PIRA_CONFIG): the runbook's defaults "
            "are in force.\nStart one with `pira config init` (writes a commented "
            "pira.yaml with every key and its default).\n"
        )
    elif warnings:
        print(f"Configuration is valid, with {len(warnings)} warning(s) (see above).\n")
    else:
        print("Configuration is valid.\n")
    print(renderer.render("console", "escalation", tables(config)))
    return 0


def config_init(out: Path, *, force: bool) -> int:
    from bot.settings_init import starter_yaml

    if out.exists() and not force:
        print(f"pira: {out} exists; --force overwrites it", file=sys.stderr)
        return 2
    try:
        out.write_text(starter_yaml(), encoding="utf-8")
    except OSError as exc:
        print(f"pira: --out: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"Wrote {out}: every key with its default; `pira config check --config {out}`")
    return 0


def slack_manifest(url: str) -> int:
    from bot.adapters.slack_manifest import manifest_yaml

    try:
        print(manifest_yaml(url), end="")
    except ValueError as exc:
        print(f"pira: --url: {exc}", file=sys.stderr)
        return 2
    return 0


def oncall_export(config: Config, *, weeks: int, out: Path) -> int:
    from bot.calendar import export_rotation

    if config.oncall.rotation is None:
        print("pira: no oncall.rotation in the configuration: nothing to export", file=sys.stderr)
        return 2
    if not 1 <= weeks <= 520:
        print("pira: --weeks must be between 1 and 520", file=sys.stderr)
        return 2
    count = export_rotation(config, span=timedelta(weeks=weeks), out=out)
    print(f"Wrote {count} shifts to {out}")
    return 0


def report(config: Config, env: Env, *, month: str | None, out: Path) -> int:
    """The month's report from the database: its table on stdout, its chart to ``out``."""
    from bot.clock import SystemClock
    from bot.domain.incident import InvalidInput
    from bot.outbox import Poster
    from bot.people import Directory
    from bot.render import Renderer
    from bot.report import Reports
    from bot.store import Store

    clock = SystemClock()
    store = Store(env.database_url)
    try:
        reports = Reports(
            store=store, config=config, clock=clock, poster=Poster(adapters=list, clock=clock)
        )
        try:
            reports.month(month)
        except InvalidInput as exc:
            print(f"pira: --month: {exc}", file=sys.stderr)
            return 2
        store.migrate()
        found, chart = reports.export(month)
    finally:
        store.dispose()
    try:
        out.write_bytes(chart)
    except OSError as exc:
        print(f"pira: --out: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    renderer = Renderer(tz=config.tz, mention=Directory(config).mention)
    print(renderer.render("console", "report", found.data()))
    return 0


def settle_heap() -> None:
    """Once started: what was imported and built so far lives as long as the process, so
    move it out of the cyclic garbage collector's way (``gc.freeze``). A full collection
    otherwise walks every object of the imported libraries each time: about 150-200 ms
    on the development machine, during which nothing runs (timers fired that late under
    load; benchmarks/README.md, B4)."""
    gc.collect()
    gc.freeze()


async def _serve(
    config: Config,
    env: Env,
    secrets: Secrets,
    *,
    console: bool,
    as_user: str | None,
    config_path: str | None = None,
) -> int:
    from sqlalchemy.engine import make_url

    from bot.adapters.console import ConsoleAdapter, run_console, run_terminal
    from bot.adapters.console_term import banner
    from bot.app import App
    from bot.people import Directory

    app = App(config=config, env=env, secrets=secrets)
    if as_user is not None and as_user.lstrip("@") not in config.people:
        known = ", ".join(sorted(config.people)) or "none configured"
        print(f"pira: --as {as_user}: not a configured person (people: {known})", file=sys.stderr)
        return 2
    # Adapters before start: posts of timers that came due while the bot was down
    # are stored for every platform that is there.
    told = config.channels.stakeholders
    terminal = sys.stdin.isatty() and sys.stdout.isatty()
    adapter = ConsoleAdapter(
        files_dir=env.files_dir,
        stakeholders=bool(told.slack or told.telegram),
        style="terminal" if terminal else "plain",
    )
    if console:
        app.add_adapter(adapter)
    else:
        for chat in app.chat_adapters():
            app.add_adapter(chat)
            if not chat.reaches(Destination.incidents()):
                print(
                    f"pira: warning: {chat.name} is configured but channels.incidents."
                    f"{chat.name} is not set: announcements will not be posted on "
                    f"{chat.name}",
                    file=sys.stderr,
                )
    try:
        await app.start()
    except Exception as exc:
        print(
            f"pira: cannot start: {type(exc).__name__}: {secrets.scrub(str(exc))[:300]}",
            file=sys.stderr,
        )
        return 1
    settle_heap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if console:
            actor = (
                app.directory.person_actor(as_user.lstrip("@"))
                if as_user
                else Directory.operator_console()
            )
            if terminal:
                intro = banner(
                    database=make_url(env.database_url).render_as_string(hide_password=True),
                    config=config_path or env.config_path,
                    actor=actor.handle if as_user else "the console",
                    roles=sorted(actor.roles),
                    log_file=str(Path(env.log_file).absolute()),
                )
                serving = run_terminal(app, adapter, actor, intro)
            else:
                serving = run_console(app, adapter, actor, sys.stdin)
            serve = asyncio.create_task(serving)
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait({serve, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if serve.done():
                serve.result()
        else:
            await app.serve_forever(stop)
    finally:
        await app.stop()
    return 0
