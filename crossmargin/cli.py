"""`crossmargin` console script: config check, devnet, serve, margin, audit.

Bad input is one line on stderr and a non-zero exit; no traceback for a user's mistake.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from crossmargin.config import Config, load_config

if TYPE_CHECKING:
    from oracle.store import HistoryStore
from crossmargin.errors import ConfigError, CrossmarginError
from crossmargin.scan import add_arguments as add_scan_arguments
from oracle.cli import add_arguments as add_prices_arguments

DEFAULT_CONFIG = Path(".devnet/crossmargin.toml")
DB_HELP = "database URL (default: $CROSSMARGIN_DATABASE_URL, then the config's api.database_url)"


def _config(path: str | None) -> Config:
    p = Path(path) if path else DEFAULT_CONFIG
    if path is None and not p.exists():
        raise CrossmarginError(
            f"no --config given and {p} does not exist (start the devnet: crossmargin devnet)"
        )
    return load_config(p)


def endpoint_host(url: str) -> str:
    """scheme://host[:port] of an RPC URL: never its path, query or user:password, where
    providers put API keys."""
    try:
        parts = urlsplit(url)
        scheme, host, port = parts.scheme, parts.hostname, parts.port
    except ValueError:  # a bad port or bracket
        scheme, host, port = "", None, None
    if scheme not in ("http", "https", "ws", "wss") or not host:
        return "(not an http(s) or ws(s) URL)"
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + (f":{port}" if port is not None else "")


def _cmd_config_check(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.file)
    except ConfigError as exc:  # a report of every problem, one per line, each with its path
        print(str(exc), file=sys.stderr)
        return 1
    print(
        f"{args.file}: ok ({len(cfg.chains)} chains, {len(cfg.assets)} assets, "
        f"{len(cfg.representations)} representations)"
    )
    for c in cfg.chains:  # what will be called, after ${VAR} expansion; hosts only
        print(f"  {c.name} ({c.chain_id}): {', '.join(endpoint_host(u) for u in c.rpc_urls)}")
    from oracle.estimation import config_estimates

    if config_estimates(cfg).repaired:
        print(
            f"{args.file}: note: risk.correlations with default_correlation are not positive "
            "semidefinite; without price history they are repaired at run time "
            "(correlation_repaired)"
        )
    return 0


def open_history(config: Config, url: str | None = None) -> HistoryStore:
    """The price-history store in the deployment's database (the API's, unless given), so
    the CLI, the API and `prices sync` all estimate sigma and rho from the same closes."""
    from api.store import database_url
    from oracle.store import HistoryStore

    return HistoryStore.open(database_url(url, config.api.database_url))


def _cmd_margin(args: argparse.Namespace) -> int:
    from crossmargin.engine import Engine
    from crossmargin.render import render_margin

    config = _config(args.config)
    history = open_history(config, args.db)

    async def run() -> str:
        async with Engine(config, history) as engine:
            report = await engine.margin(args.address, args.target_chain)
        return report.model_dump_json(indent=2) if args.json else render_margin(report)

    try:
        print(asyncio.run(run()))
    finally:
        history.close()
    return 0


def _cmd_scan(args: argparse.Namespace) -> int:
    from crossmargin.scan import run_cli

    return run_cli(args, _config(args.config))


def _cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from api.app import create_app

    config = _config(args.config)
    host = args.host or config.api.host
    port = args.port if args.port is not None else config.api.port
    history = open_history(config, args.db)
    try:
        app = create_app(config, database=args.db, history=history)
        web.run_app(app, host=host, port=port, print=None)
    finally:
        history.close()
    return 0


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from api.audit import run_verify
    from api.store import database_url
    from crossmargin.config import ApiConfig

    if args.all == bool(args.id):
        raise CrossmarginError("give either a snapshot ID or --all")
    has_config = args.config is not None or DEFAULT_CONFIG.exists()
    api = _config(args.config).api if has_config else ApiConfig()
    return run_verify(database_url(args.database, api.database_url), args.id)


def _cmd_prices_sync(args: argparse.Namespace) -> int:
    from oracle.cli import run

    return run(args, _config(args.config))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crossmargin", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    config = sub.add_parser("config", help="configuration files")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser(
        "check", help="validate a config file; print each chain's RPC hosts"
    )
    check.add_argument("file")
    check.set_defaults(func=_cmd_config_check)

    margin = sub.add_parser("margin", help="unified margin account of one address")
    margin.add_argument("address")
    margin.add_argument("--target-chain", help="chain name or id (default: settlement chain)")
    margin.add_argument("--config", help=f"config file (default: {DEFAULT_CONFIG})")
    margin.add_argument("--json", action="store_true", help="print the API's JSON")
    margin.add_argument("--db", help=DB_HELP)
    margin.set_defaults(func=_cmd_margin)

    scan = sub.add_parser("scan", help="margin of many accounts to JSON lines or CSV (resumable)")
    add_scan_arguments(scan)
    scan.set_defaults(func=_cmd_scan)

    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--config", help=f"config file (default: {DEFAULT_CONFIG})")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--db", help=DB_HELP)
    serve.set_defaults(func=_cmd_serve)

    audit = sub.add_parser("audit", help="the snapshot audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="recompute snapshots and walk the hash chains")
    verify.add_argument("id", nargs="?", help="one snapshot id (its account's chain is walked)")
    verify.add_argument("--all", action="store_true", help="every snapshot of every account")
    verify.add_argument(
        "--database", help="database URL (default: $CROSSMARGIN_DATABASE_URL, config)"
    )
    verify.add_argument("--config", help=f"config file (default: {DEFAULT_CONFIG})")
    verify.set_defaults(func=_cmd_audit_verify)

    prices = sub.add_parser("prices", help="price history (METHOD.md §6)")
    prices_sub = prices.add_subparsers(dest="prices_command", required=True)
    sync = prices_sub.add_parser("sync", help="store daily closes from the feeds' rounds")
    add_prices_arguments(sync, str(DEFAULT_CONFIG))
    sync.set_defaults(func=_cmd_prices_sync)

    sub.add_parser("devnet", help="run local chains with demo accounts (see devnet --help)")
    sub.add_parser("up", help="devnet + API + web page in one process (make run)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["devnet"]:  # its own parser: options pass through untouched
        from crossmargin.devnet import main as devnet_main

        return devnet_main(argv[1:])
    if argv[:1] == ["up"]:
        from crossmargin.up import main as up_main

        return up_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except CrossmarginError as exc:
        message = "; ".join(str(exc).splitlines()) or type(exc).__name__
        print(f"crossmargin: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
