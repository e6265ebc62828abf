"""The `yizheng` command."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import logging
import secrets
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from display.settings import Feed, Settings, SettingsError, load

log = logging.getLogger("yizheng")

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "yizheng.example.toml"


def _setup_logging(verbose: bool) -> None:
    from display.logs import configure

    configure(logging.DEBUG if verbose else logging.INFO)


# --- serve / demo ------------------------------------------------------------------


async def _serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from display.app import create_app

    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=3,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    await server.serve()


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    print(f"yizheng: serving on http://{args.host}:{args.port}  (Ctrl+C to stop)", flush=True)
    asyncio.run(_serve(settings, args.host, args.port))
    return 0


def demo_settings(base: Settings, db_path: Path, simulator_url: str) -> Settings:
    feeds = tuple(
        dataclasses.replace(f, url=simulator_url, interval=min(f.interval, 3.0))
        if f.kind in ("open311", "simulator")
        else f
        for f in base.feeds
    )
    return dataclasses.replace(
        base,
        database_url=f"sqlite:///{db_path}",
        feeds=feeds,
        # Sessions need not outlive the demo: a fresh random key each run.
        secret_key=base.secret_key or secrets.token_urlsafe(32),
    )


async def _demo(settings: Settings, host: str, port: int, sim_port: int, step: float) -> None:
    from feeds.simulator import Simulator, serve_simulator

    sim = Simulator([(t.slug, t.name) for t in settings.towns], step_seconds=step)
    async with serve_simulator(sim, "127.0.0.1", sim_port, advance=True):
        await _serve(settings, host, port)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    with tempfile.TemporaryDirectory(prefix="yizheng-demo-") as tmp_dir:
        tmp = Path(tmp_dir)
        sim_url = f"http://127.0.0.1:{args.simulator_port}/open311/v2"
        demo = demo_settings(settings, tmp / "demo.db", sim_url)
        # A staff account for trying the admin; its password lives as long as the demo.
        password = secrets.token_urlsafe(9)
        asyncio.run(_demo_account(demo, password))
        base = f"http://{args.host}:{args.port}"
        print("yizheng 演示 demo", flush=True)
        print(f"  database:   {tmp / 'demo.db'} (temporary, removed on exit)")
        print(f"  simulator:  {sim_url} (a demo case system; cases move every {args.step:g} s)")
        print(f"  kiosk:      {base}/kiosk/{demo.towns[0].slug if demo.towns else ''}")
        for b in demo.boards:
            if b.kind == "led":
                print(f"  LED board:  {base}/led/{b.id}   (picture: {base}/led/{b.id}/frame.png)")
        print(f"  county:     {base}/kiosk")
        print(f"  staff:      {base}/admin   (demo account: admin / {password})")
        print("  Ctrl+C to stop.", flush=True)
        try:
            asyncio.run(_demo(demo, args.host, args.port, args.simulator_port, args.step))
        except OSError as e:
            print(
                f"yizheng: cannot start the demo: {e} (is another demo running? "
                "try --port and --simulator-port)",
                file=sys.stderr,
            )
            return 1
    return 0


async def _demo_account(settings: Settings, password: str) -> None:
    from display.auth import hash_password

    async def add(store: Any) -> None:
        await store.add_user("admin", "admin", [], hash_password(password))

    await _with_store(settings, add)


# --- database ------------------------------------------------------------------------


async def _with_store(settings: Settings, fn: Callable[[Any], Any]) -> Any:
    from display.store import open_store

    store = open_store(settings)
    await store.open()
    try:
        await store.migrate()
        return await fn(store)
    finally:
        await store.close()


def cmd_db_migrate(args: argparse.Namespace, settings: Settings) -> int:
    async def main() -> list[str]:
        from display.store import open_store

        store = open_store(settings)
        await store.open()
        try:
            return await store.migrate()
        finally:
            await store.close()

    applied = asyncio.run(main())
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def cmd_db_backup(args: argparse.Namespace, settings: Settings) -> int:
    if settings.sqlite_path is None:
        print("yizheng: for PostgreSQL use pg_dump (see docs/deploy.md)", file=sys.stderr)
        return 2
    out = Path(args.file)
    if out.exists():
        print(f"yizheng: {out} exists; refusing to overwrite", file=sys.stderr)
        return 2

    async def run(store: Any) -> None:
        await store.backup(str(out))

    asyncio.run(_with_store(settings, run))
    print(f"backup written to {out}")
    return 0


# --- feeds ---------------------------------------------------------------------------


def _configured_feed(settings: Settings, name: str) -> Feed | None:
    """The feed `name` of the configuration, or None after saying which ones there are."""
    feed = settings.feed(name)
    if feed is None:
        names = ", ".join(f.name for f in settings.feeds) or "(none)"
        print(f"yizheng: no feed named {name!r}; configured: {names}", file=sys.stderr)
    return feed


def _print_progress(done: int, total: int) -> None:
    """Ingest's progress on a long batch (a 100,000-row ledger takes many seconds)."""
    if total >= PROGRESS_MIN:
        print(f"  prepared {done:,} / {total:,} record(s)", file=sys.stderr, flush=True)


#: Batches smaller than this finish too fast for progress lines to help.
PROGRESS_MIN = 20_000


def _print_counts(counts: Any, reasons: Sequence[tuple[str | None, str]]) -> None:
    print(
        "new {new}, changed {changed}, unchanged {unchanged}, withdrawn {withdrawn}, "
        "quarantined {quarantined}".format(**counts)
    )
    for sid, reason in reasons[:50]:
        print(f"  quarantined {sid or '(no id)'}: {reason}")
    if len(reasons) > 50:
        print(f"  … and {len(reasons) - 50} more (yizheng feed status)")


def cmd_feed_run(args: argparse.Namespace, settings: Settings) -> int:
    from display.app import shutdown, startup
    from display.context import Context
    from display.feedrun import build_runner
    from display.leader import feed_lock
    from feeds.adapters import FeedError

    feed = _configured_feed(settings, args.name)
    if feed is None:
        return 2
    if feed.kind == "webhook":
        print(
            f"yizheng: feed {args.name!r} is a webhook (push-only); nothing to run", file=sys.stderr
        )
        return 2

    async def main() -> int:
        # One process at a time runs the feeds: a running service holds this lock.
        lock = feed_lock(settings.database_url)
        if not await lock.try_acquire():
            print(
                "yizheng: the feeds are being run by a running service on this database; "
                "use 立即同步 (sync now) at /admin/feeds, or stop the service first",
                file=sys.stderr,
            )
            return 2
        ctx = Context.build(dataclasses.replace(settings, run_feeds=False))
        await startup(ctx)
        try:
            runner = build_runner(ctx, args.name)
            if args.once:
                adapter = runner.adapter
                try:
                    batch = await adapter.pull(await ctx.ingestor.load_cursor(args.name))
                except FeedError as e:
                    await ctx.ingestor.record_failure(args.name, str(e))
                    print(f"yizheng: feed {args.name} could not be read: {e}", file=sys.stderr)
                    return 1
                finally:
                    await adapter.aclose()
                counts = await ctx.ingestor.ingest(args.name, batch, _print_progress)
                _print_counts(counts.as_dict(), counts.reasons)
                return 0
            print(f"running feed {args.name} every {feed.interval:g} s (Ctrl+C to stop)")
            await runner.run(ctx.stop)
            return 0
        finally:
            await shutdown(ctx)
            await lock.release()

    return asyncio.run(main())


def cmd_feed_status(args: argparse.Namespace, settings: Settings) -> int:
    async def run(store: Any) -> None:
        states = {s.name: s for s in await store.feed_states()}
        print(
            f"{'feed':<14}{'kind':<10}{'last success (UTC)':<22}{'failures':>9}"
            f"{'quarantine':>11}  last error"
        )
        for f in settings.feeds:
            s = states.get(f.name)
            last = (
                s.last_success_at.strftime("%Y-%m-%d %H:%M:%S")
                if s and s.last_success_at
                else "never"
            )
            print(
                f"{f.name:<14}{f.kind:<10}{last:<22}{(s.consecutive_failures if s else 0):>9}"
                f"{(s.quarantined if s else 0):>11}  {(s.last_error or '') if s else ''}"
            )

    asyncio.run(_with_store(settings, run))
    return 0


def cmd_feed_quarantine(args: argparse.Namespace, settings: Settings) -> int:
    if _configured_feed(settings, args.name) is None:
        return 2
    if args.limit < 1:
        print("yizheng: --limit must be at least 1", file=sys.stderr)
        return 2

    async def run(store: Any) -> None:
        problems = await store.quarantine(args.name, args.limit)
        if not problems:
            print(f"feed {args.name}: nothing quarantined")
            return
        print(f"{'last seen (UTC)':<20}{'times':>6}  {'record':<24}reason")
        for q in problems:
            print(
                f"{q.at.strftime('%Y-%m-%d %H:%M'):<20}{q.seen:>6}  "
                f"{q.source_id or '(no id)':<24}{q.reason}"
            )

    asyncio.run(_with_store(settings, run))
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from display.context import Context
    from display.feedrun import feed_config, town_map
    from feeds.adapters import FeedError
    from feeds.ledger import read_ledger

    feed = _configured_feed(settings, args.feed)
    if feed is None:
        return 2
    if feed.kind != "ledger":
        ledgers = ", ".join(f.name for f in settings.feeds if f.kind == "ledger") or "none"
        print(
            f"yizheng: feed {args.feed!r} is a {feed.kind} feed; import needs a ledger feed "
            f"(configured ledger feeds: {ledgers})",
            file=sys.stderr,
        )
        return 2
    path = Path(args.file)
    if not path.is_file():
        print(f"yizheng: {path} is not a file", file=sys.stderr)
        return 2

    async def main() -> int:
        ctx = Context.build(settings)
        await ctx.store.open()
        try:
            await ctx.store.migrate()
            config = feed_config(ctx, args.feed)
            try:
                print(f"reading {path} …", flush=True)
                batch = read_ledger(path, config, town_map(ctx, config.get("towns")))
            except FeedError as e:
                print(f"yizheng: {path} could not be read: {e}", file=sys.stderr)
                return 1
            print(
                f"read {len(batch.records)} record(s), {len(batch.rejected)} rejected; storing …",
                flush=True,
            )
            batch.cursor = None
            counts = await ctx.ingestor.ingest(args.feed, batch, _print_progress)
            _print_counts(counts.as_dict(), counts.reasons)
            return 0
        finally:
            await ctx.store.close()

    return asyncio.run(main())


# --- other commands ---------------------------------------------------------------


def cmd_redact(args: argparse.Namespace, settings: Settings) -> int:
    from display.privacy import redact_cli

    return redact_cli(sys.stdin, sys.stdout, as_json=args.json)


def cmd_user_add(args: argparse.Namespace, settings: Settings) -> int:
    from display.auth import hash_password, validate_new_user

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("密码 password: ")
        if getpass.getpass("再次输入 again: ") != password:
            print("yizheng: passwords do not match", file=sys.stderr)
            return 2
    towns = [t for t in (args.town or [])]
    problem = validate_new_user(settings, args.name, args.role, towns, password)
    if problem:
        print(f"yizheng: {problem}", file=sys.stderr)
        return 2

    async def run(store: Any) -> bool:
        existed = await store.get_user(args.name) is not None
        await store.add_user(args.name, args.role, towns, hash_password(password))
        action = "user.reset" if existed else "user.add"
        await store.audit("cli", action, args.name, f"role={args.role}", None)
        return existed

    existed = asyncio.run(_with_store(settings, run))
    if existed:
        # How an admin who lost the password gets back in; said plainly, and audited.
        print(
            f"user {args.name} existed: its role ({args.role}) and password were reset, "
            "and its sessions ended"
        )
    else:
        print(f"user {args.name} ({args.role}) added")
    return 0


def cmd_render(args: argparse.Namespace, settings: Settings) -> int:
    from display.led.commands import render_cmd

    return render_cmd(settings, args.board, Path(args.out), args.page)


def cmd_led_client(args: argparse.Namespace, settings: Settings) -> int:
    from display.led.client import led_client

    return asyncio.run(
        led_client(args.url, Path(args.out) if args.out else None, args.format, args.max_frames)
    )


# --- argument parsing ---------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="yizheng",
        description="议政 yizheng: public progress display for citizens' appeals.",
    )
    p.add_argument(
        "--config", metavar="FILE", help="TOML settings file (default: ./yizheng.toml when present)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("serve", help="run the service")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("demo", help="serve with a simulated case system on a temporary database")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument(
        "--simulator-port",
        type=int,
        default=9311,
        help="port of the simulated Open311 case system (default 9311)",
    )
    s.add_argument(
        "--step", type=float, default=5.0, help="seconds between simulated case changes (default 5)"
    )
    s.set_defaults(func=cmd_demo)

    db = sub.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_command", metavar="DB_COMMAND", required=True
    )
    s = db.add_parser("migrate", help="create or upgrade the schema")
    s.set_defaults(func=cmd_db_migrate)
    s = db.add_parser("backup", help="write an online backup of the SQLite database to FILE")
    s.add_argument("file", metavar="FILE", help="where to write the backup")
    s.set_defaults(func=cmd_db_backup)

    feed = sub.add_parser("feed", help="run or inspect the case-system feeds").add_subparsers(
        dest="feed_command", metavar="FEED_COMMAND", required=True
    )
    s = feed.add_parser("run", help="pull one feed (every interval, or once)")
    s.add_argument("name", metavar="NAME", help="the feed's name in the configuration")
    s.add_argument("--once", action="store_true", help="pull once, print the counts and exit")
    s.set_defaults(func=cmd_feed_run)
    s = feed.add_parser("status", help="last success, failures and quarantine of each feed")
    s.set_defaults(func=cmd_feed_status)
    s = feed.add_parser(
        "quarantine", help="list a feed's quarantined records: why each was refused"
    )
    s.add_argument("name", metavar="NAME", help="the feed's name in the configuration")
    s.add_argument(
        "--limit", type=int, default=100, metavar="N", help="list at most N (default 100)"
    )
    s.set_defaults(func=cmd_feed_quarantine)

    s = sub.add_parser("import", help="import a ledger file (CSV or XLSX) through a feed")
    s.add_argument("file", metavar="FILE", help="the ledger file")
    s.add_argument(
        "--feed", required=True, metavar="NAME", help="the ledger feed whose column mapping to use"
    )
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("redact", help="redact personal data from stdin lines to stdout")
    s.add_argument("--json", action="store_true", help="write the removed spans too (JSON lines)")
    s.set_defaults(func=cmd_redact)

    s = sub.add_parser("render", help="render an LED board's page to a file")
    s.add_argument("board", metavar="BOARD", help="board id")
    s.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="file to write; its ending picks the format: .png, .gif (all pages), .txt, "
        ".mono1, .rgb565, .rgb888",
    )
    s.add_argument("--page", type=int, default=None, help="page number (default: current)")
    s.set_defaults(func=cmd_render)

    s = sub.add_parser("led-client", help="subscribe to a board like a microcontroller would")
    s.add_argument("url", metavar="URL", help="the board's URL, e.g. http://host/led/ID")
    s.add_argument(
        "--out",
        metavar="DIR",
        help="write frames as PNG files here (default: draw in the terminal)",
    )
    s.add_argument(
        "--format",
        choices=["mono1", "rgb565", "rgb888"],
        default="mono1",
        help="raw frame format to request (default mono1)",
    )
    s.add_argument("--max-frames", type=int, default=None, help="stop after N frames")
    s.set_defaults(func=cmd_led_client)

    user = sub.add_parser("user", help="staff accounts").add_subparsers(
        dest="user_command", metavar="USER_COMMAND", required=True
    )
    s = user.add_parser("add", help="add a staff account (or reset its password and role)")
    s.add_argument("name", metavar="NAME", help="login name")
    s.add_argument(
        "--role",
        required=True,
        choices=["admin", "county", "town"],
        help="admin: everything; county: all towns; town: its own towns",
    )
    s.add_argument(
        "--town", action="append", metavar="SLUG", help="town slug for a town account (repeatable)"
    )
    s.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin",
    )
    s.set_defaults(func=cmd_user_add)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        config = args.config
        if config is None and not Path("yizheng.toml").exists():
            if args.command == "demo":
                config = str(EXAMPLE_CONFIG)
            elif args.command not in ("redact", "led-client"):
                print(
                    "yizheng: no configuration file (./yizheng.toml or --config FILE): "
                    "running with defaults, no towns and no boards",
                    file=sys.stderr,
                )
        settings = load(config)
    except SettingsError as e:
        print(f"yizheng: configuration error: {e}", file=sys.stderr)
        return 2
    # SIGTERM (systemd, `kill`, `timeout`) ends the process as Ctrl+C does, so that
    # cleanups run: uvicorn re-raises the signal it caught once it has shut down.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result: int = args.func(args, settings)
    except _Terminated:
        return 0  # a requested stop, not a failure (systemd counts 0 as clean)
    except KeyboardInterrupt:
        return 130
    return result


class _Terminated(KeyboardInterrupt):
    pass


def _interrupt(signum: int, frame: object) -> None:
    raise _Terminated


if __name__ == "__main__":
    raise SystemExit(main())
