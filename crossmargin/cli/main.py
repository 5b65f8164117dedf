"""`crossmargin` console script: config check, devnet, serve, margin, audit.

Bad input is one line on stderr and a non-zero exit; no traceback for a user's mistake.
Exit status: 0 ok, 1 error, 2 usage (argparse), 3 an incomplete result (margin: partial or
unknown liquidation; scan: a partial or error record in the output), 4 liquidatable
(margin), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable
from importlib.metadata import EntryPoint, PackageNotFoundError, entry_points, version
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from crossmargin.core.config import Config, load_config

if TYPE_CHECKING:
    from aiohttp import web

    from crossmargin.pipeline.report import MarginReport
    from oracle.store import HistoryStore
from crossmargin.cli.margin import add_arguments as add_margin_arguments
from crossmargin.cli.prices import ENV_URL
from crossmargin.cli.prices import add_arguments as add_prices_arguments
from crossmargin.cli.scan import add_arguments as add_scan_arguments
from crossmargin.core.errors import ConfigError, CrossmarginError

DEFAULT_CONFIG = Path(".devnet/crossmargin.toml")
DB_HELP = f"database URL (default: ${ENV_URL}, then the config's api.database_url)"

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL, EXIT_LIQUIDATABLE = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 128 + signal.SIGINT


def _version() -> str:
    try:
        return version("crossmargin")
    except PackageNotFoundError:
        return "unknown"


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
        return EXIT_ERROR
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
    return EXIT_OK


def database(explicit: str | None, config: Config | None) -> tuple[str, str]:
    """The deployment database's URL (normalised) and where it came from: `--db`, else
    $CROSSMARGIN_DATABASE_URL, else the config's api.database_url, as the API resolves it.
    Checked without connecting; messages name the source, never the URL (it may hold a
    password or a host)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from api.store import normalise_url
    from crossmargin.core.config import ApiConfig

    if explicit is not None:
        url, source = explicit, "--db"
    elif os.environ.get(ENV_URL):
        url, source = os.environ[ENV_URL], f"${ENV_URL}"
    else:
        url, source = (config.api if config else ApiConfig()).database_url, "api.database_url"
    url = normalise_url(url.strip())
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise CrossmarginError(
            f"{source}: not a database URL (sqlite:///PATH or postgresql://USER@HOST/DB)"
        ) from None
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise CrossmarginError(
            f"{source}: unsupported database {parsed.drivername!r} (sqlite or postgresql)"
        )
    return url, source


def _cannot_open(url: str, source: str, exc: Exception) -> CrossmarginError:
    """One line naming the source; no driver message (it may quote host and port)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        why = f": {exc.strerror}" if isinstance(exc, OSError) and exc.strerror else ""
        return CrossmarginError(f"{source}: cannot use the SQLite database {parsed.database}{why}")
    if isinstance(exc, OperationalError):
        return CrossmarginError(f"{source}: cannot connect to the PostgreSQL database")
    return CrossmarginError(f"{source}: cannot use the PostgreSQL database")


def open_store(url: str, source: str) -> HistoryStore:
    """The price-history store at `url` (from `database`); a failure is one line."""
    from sqlalchemy.exc import SQLAlchemyError

    from oracle.store import HistoryStore

    try:
        return HistoryStore.open(url)
    except (SQLAlchemyError, OSError) as exc:
        raise _cannot_open(url, source, exc) from exc


def open_history(config: Config, explicit: str | None = None) -> HistoryStore:
    """The price-history store in the deployment's database (the API's, unless given), so
    the CLI, the API and `prices sync` all estimate sigma and rho from the same closes."""
    return open_store(*database(explicit, config))


def margin_exit(report: MarginReport) -> int:
    """4 if liquidatable; 3 if the figures are incomplete (partial, or liquidation
    unknown); else 0. Liquidatable wins: it is the state a caller must not miss."""
    if report.totals.liquidatable:
        return EXIT_LIQUIDATABLE
    if report.status != "ok" or report.totals.liquidatable is None:
        return EXIT_PARTIAL
    return EXIT_OK


def _cmd_margin(args: argparse.Namespace) -> int:
    from crossmargin.cli.margin import from_engine, from_server
    from crossmargin.cli.render import render_margin

    if args.server:
        if args.config or args.db:
            raise CrossmarginError("--server asks a running API: drop --config and --db")
        answer = asyncio.run(from_server(args))
    else:
        config = _config(args.config)
        history = open_history(config, args.db)
        try:
            answer = asyncio.run(from_engine(args, config, history))
        finally:
            history.close()
    if args.json:
        print(answer.margin.model_dump_json(indent=2))
    else:
        print(render_margin(answer.margin, capacity=answer.capacity))
    return margin_exit(answer.margin)


def _cmd_scan(args: argparse.Namespace) -> int:
    from crossmargin.cli.scan import run_cli

    config = _config(args.config)
    history = open_history(config, args.db)
    try:
        summary = run_cli(args, config, history)
    finally:
        history.close()
    return EXIT_PARTIAL if summary.incomplete else EXIT_OK


def bound_urls(runner: web.AppRunner) -> list[str]:
    """http://host:port of every socket the API listens on (the real port for --port 0)."""
    urls = []
    for address in runner.addresses:
        host, port = address[0], address[1]
        urls.append(f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}")
    return urls


def _cmd_serve(args: argparse.Namespace) -> int:
    from api.app import create_app
    from crossmargin.cli.serve import run_workers, serve_app

    config = _config(args.config)
    host = args.host or config.api.host
    port = args.port if args.port is not None else config.api.port
    workers = args.workers if args.workers is not None else config.api.workers
    url, _ = database(args.db, config)
    if workers > 1:
        path = str(Path(args.config).resolve()) if args.config else str(DEFAULT_CONFIG.resolve())
        run_workers(path, args.db, url, host, port, workers)
        return EXIT_OK
    history = open_history(config, args.db)
    try:
        asyncio.run(serve_app(create_app(config, database=url, history=history), host, port))
    finally:
        history.close()
    return EXIT_OK


def _workers(text: str) -> int:
    n = int(text)
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError("must be 1 to 64")
    return n


def _cmd_watch(args: argparse.Namespace) -> int:
    from crossmargin.cli.watch import run_watch

    config = _config(args.config)
    url, _ = database(args.db, config)
    return run_watch(args, config, url)


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from api.audit import run_verify
    from api.store import StoreError
    from api.tlog.audit import run_verify_head

    if sum((args.all, bool(args.id), args.tree_head is not None)) != 1:
        raise CrossmarginError("give one of a snapshot ID, --all or --tree-head FILE")
    has_config = args.config is not None or DEFAULT_CONFIG.exists()
    config = _config(args.config) if has_config else None
    url, source = database(args.db, config)
    if args.tree_head is not None:
        head, key = _tree_head_inputs(args, config)
    try:
        if args.tree_head is not None:
            return run_verify_head(url, head, key)
        return run_verify(url, args.id, offline=args.offline)
    except StoreError as exc:  # the store's own one-line reason, with where the URL came from
        raise CrossmarginError(f"{source}: {exc}") from exc
    except (SQLAlchemyError, OSError) as exc:
        raise _cannot_open(url, source, exc) from exc


def _tree_head_inputs(args: argparse.Namespace, config: Config | None) -> tuple[str, bytes]:
    """The kept tree head's text, and the public key to check it with: --public-key, else
    that of the configured signing key (`api.tlog_key`)."""
    from api.tlog.heads import Signer, load_public_key

    head = _read_text(args.tree_head, "tree head")
    if args.public_key is not None:
        return head, load_public_key(_read_text(args.public_key, "public key"))
    if config is None or config.api.tlog_key is None:
        raise CrossmarginError("give --public-key FILE (no api.tlog_key in the config)")
    return head, Signer.load(config.api.tlog_key).public_key


def _read_text(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise CrossmarginError(f"cannot read the {what} file {path}: {why}") from exc


def _cmd_prices_sync(args: argparse.Namespace) -> int:
    from crossmargin.cli.prices import run

    config = _config(args.config)
    open_history(config, args.db).close()  # a bad URL is one line here, not a traceback
    args.db, _ = database(args.db, config)
    return run(args, config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crossmargin", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"crossmargin {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    config = sub.add_parser("config", help="configuration files")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser(
        "check", help="validate a config file; print each chain's RPC hosts"
    )
    check.add_argument("file")
    check.set_defaults(func=_cmd_config_check)

    margin = sub.add_parser(
        "margin",
        help="unified margin account and borrowing capacity of one address",
        description="Computed here from the chains, or by a running API (--server). "
        "Exit status: 0 ok, 3 partial or liquidation unknown, 4 liquidatable.",
    )
    add_margin_arguments(margin, f"config file (default: {DEFAULT_CONFIG})", DB_HELP)
    margin.set_defaults(func=_cmd_margin)

    scan = sub.add_parser(
        "scan",
        help="margin of many accounts to JSON lines or CSV (resumable)",
        description="Exit status: 0 every record ok, 3 some record partial or an error, "
        "130 interrupted (rerun to resume).",
    )
    add_scan_arguments(scan, DB_HELP)
    scan.set_defaults(func=_cmd_scan)

    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--config", help=f"config file (default: {DEFAULT_CONFIG})")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--db", help=DB_HELP)
    serve.add_argument(
        "--workers",
        type=_workers,
        help="processes serving the port (default: api.workers, 1)",
    )
    serve.set_defaults(func=_cmd_serve)

    watch = sub.add_parser(
        "watch",
        help="watch accounts; signed webhook alerts on threshold crossings (§14)",
        description="Without the API: alerts are stored in the database, then POSTed.",
    )
    from crossmargin.cli.watch import add_watch_arguments

    add_watch_arguments(watch, f"config file (default: {DEFAULT_CONFIG})", DB_HELP)
    watch.set_defaults(func=_cmd_watch)

    audit = sub.add_parser("audit", help="the snapshot audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="recompute snapshots and walk the hash chains")
    verify.add_argument("id", nargs="?", help="one snapshot id (its account's chain is walked)")
    verify.add_argument("--all", action="store_true", help="every snapshot of every account")
    verify.add_argument(
        "--offline",
        action="store_true",
        help="also re-prove every verified-mode balance from the stored headers and proofs",
    )
    verify.add_argument("--db", help=DB_HELP)
    verify.add_argument("--database", dest="db", help=argparse.SUPPRESS)  # the old name
    verify.add_argument("--config", help=f"config file (default: {DEFAULT_CONFIG})")
    verify.add_argument(
        "--tree-head",
        metavar="FILE",
        help="a kept signed tree head (GET /v1/log/tree-head): the store must still hold, "
        "unchanged and in order, every snapshot it covers",
    )
    verify.add_argument(
        "--public-key",
        metavar="FILE",
        help="the log's public key (GET /v1/log/key, PEM or hex; default: the configured key)",
    )
    verify.set_defaults(func=_cmd_audit_verify)

    prices = sub.add_parser("prices", help="price history (METHOD.md §6)")
    prices_sub = prices.add_subparsers(dest="prices_command", required=True)
    sync = prices_sub.add_parser("sync", help="store daily closes from the feeds' rounds")
    add_prices_arguments(sync, str(DEFAULT_CONFIG))
    sync.set_defaults(func=_cmd_prices_sync)

    sub.add_parser("devnet", help="run local chains with demo accounts (see devnet --help)")
    sub.add_parser("up", help="devnet + API + web page in one process (make run)")
    return parser


def _tools() -> dict[str, EntryPoint]:
    """Commands of the development tools outside the wheel (`devnet/`), registered as
    entry points so that nothing here imports them: a layer never imports one above."""
    return {ep.name: ep for ep in entry_points(group="crossmargin.tools")}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    tool = _tools().get(argv[0]) if argv else None
    if tool is not None:  # a development tool with its own parser (devnet, up)
        try:
            run: Callable[[list[str]], int] = tool.load()
        except ImportError:
            print(f"crossmargin: error: '{argv[0]}' needs a source checkout", file=sys.stderr)
            return EXIT_ERROR
        return run(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except CrossmarginError as exc:
        message = "; ".join(str(exc).splitlines()) or type(exc).__name__
        print(f"crossmargin: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code


def console() -> None:
    """The `crossmargin` console script: `main` in a process of its own, whose cyclic
    collector is tuned for the engine's many short-lived objects (`collect_less`)."""
    from crossmargin.engine import collect_less

    collect_less()
    sys.exit(main())


if __name__ == "__main__":
    console()
