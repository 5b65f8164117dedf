"""`crossmargin watch`: a local watch without the API (METHOD.md §14).

    crossmargin watch --accounts FILE --health-below 1.2 --webhook URL [--secret S]

FILE holds one address per line (blank lines and `#` comments ignored). Alerts are
stored in the deployment database (--db, as `serve`) and POSTed to the webhook,
signed with the secret (--secret, else $CROSSMARGIN_WEBHOOK_SECRET, else a random
one printed once on stderr). Runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

from crossmargin.core.config import Config
from crossmargin.core.errors import CrossmarginError

SECRET_ENV = "CROSSMARGIN_WEBHOOK_SECRET"


def add_watch_arguments(p: argparse.ArgumentParser, config_help: str, db_help: str) -> None:
    p.add_argument("--accounts", required=True, help="file of addresses, one a line")
    p.add_argument("--webhook", required=True, help="URL alerts are POSTed to")
    p.add_argument("--secret", help=f"signing secret (default: ${SECRET_ENV}, else random)")
    p.add_argument("--health-below", type=float, help="alert when health < H")
    p.add_argument("--free-margin-below", help="alert when free margin (USD) < F")
    p.add_argument("--liquidatable", action="store_true", help="alert when liquidatable")
    p.add_argument("--partial", action="store_true", help="alert when a report is partial")
    p.add_argument("--target-chain", help="chain name or id (default: settlement chain)")
    p.add_argument("--config", help=config_help)
    p.add_argument("--db", help=db_help)


def read_accounts(path: str) -> list[str]:
    from api.models import address  # the API's own check (heavy imports only when run)

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CrossmarginError(f"cannot read --accounts file: {type(exc).__name__}") from None
    out: list[str] = []
    for n, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            out.append(address(text))
        except ValueError:
            raise CrossmarginError(f"--accounts line {n}: not an address") from None
    if not out:
        raise CrossmarginError("--accounts: no address in the file")
    return list(dict.fromkeys(out))


def fields_of(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    from pydantic import ValidationError

    from api.watch.models import webhook_url
    from api.watch.rules import Thresholds

    try:
        thresholds = Thresholds(
            health_below=args.health_below,
            free_margin_below=args.free_margin_below,
            liquidatable=args.liquidatable,
            partial=args.partial,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CrossmarginError(
            f"thresholds: {first['msg'].removeprefix('Value error, ')}"
        ) from None
    try:
        url = webhook_url(args.webhook)
    except ValueError as exc:
        raise CrossmarginError(f"--webhook: {exc}") from None
    try:
        target = config.chain(args.target_chain or config.settlement_chain).name
    except KeyError:
        raise CrossmarginError(f"unknown --target-chain {args.target_chain!r}") from None
    accounts = read_accounts(args.accounts)
    if len(accounts) > config.watch.max_accounts:
        raise CrossmarginError(f"--accounts: more than {config.watch.max_accounts} addresses")
    secret = args.secret or os.environ.get(SECRET_ENV)
    if secret is not None and len(secret) < 16:
        raise CrossmarginError("--secret: at least 16 characters")
    if not secret:  # the last step: printed only when everything else was fine
        secret = secrets.token_urlsafe(24)
        print(f"webhook secret (shown once): {secret}", file=sys.stderr)
    return {
        "name": "local",
        "accounts": accounts,
        "target": target,
        "method": config.risk.method,
        "thresholds": thresholds,
        "webhook_url": url,
        "secret": secret,
    }


async def _run(config: Config, url: str, fields: dict[str, Any]) -> None:
    from api.watch.local import watch_locally

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    n = len(fields["accounts"])
    print(f"watching {n} account(s) on {fields['target']}; alerts to the webhook", flush=True)
    await watch_locally(config, url, fields, stop)


def run_watch(args: argparse.Namespace, config: Config, url: str) -> int:
    asyncio.run(_run(config, url, fields_of(args, config)))
    return 0
