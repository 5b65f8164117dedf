"""`crossmargin margin`: one account's margin and borrowing capacity, computed here (the
Engine over the configured chains) or asked of a running server (`--server URL`, or
$CROSSMARGIN_SERVER) through the typed client, with its key from $CROSSMARGIN_API_KEY.

Both ways compute the same §7 report with the method asked (`--method`, else the
config's or the server's) and the §8 capacity on the same target chain; the table shows
both, `--json` prints the margin report exactly as the API serves it. A capacity that
cannot be computed is a line under the table, not a failure of the command.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crossmargin.core.errors import CrossmarginError
from crossmargin.pipeline.report import CapacityReport, MarginReport

if TYPE_CHECKING:
    from crossmargin.core.config import Config
    from oracle.store import HistoryStore

ENV_SERVER = "CROSSMARGIN_SERVER"
ENV_KEY = "CROSSMARGIN_API_KEY"


@dataclass(frozen=True, slots=True)
class Answer:
    """The margin report; the capacity report or why there is none; the snapshot id
    when a server stored the computation."""

    margin: MarginReport
    capacity: CapacityReport | str
    snapshot_id: str | None = None


def add_arguments(p: argparse.ArgumentParser, config_help: str, db_help: str) -> None:
    p.add_argument("address")
    p.add_argument("--target-chain", help="chain name or id (default: settlement chain)")
    p.add_argument(
        "--method",
        choices=("var", "es"),
        help="margin method (METHOD.md §7): var (value at risk) or es (expected "
        "shortfall); default: the config's",
    )
    p.add_argument(
        "--server",
        metavar="URL",
        default=os.environ.get(ENV_SERVER) or None,
        help=f"ask a running crossmargin API instead of reading the chains here (default: "
        f"${ENV_SERVER}); its key, if it needs one, from ${ENV_KEY}",
    )
    p.add_argument("--config", help=config_help)
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.add_argument("--db", help=db_help)


async def from_server(args: argparse.Namespace) -> Answer:
    """Both reports from the server, concurrently; problems are the client's errors."""
    from crossmargin.client import ApiError, Client

    try:
        client = Client(args.server, key=os.environ.get(ENV_KEY) or None)
    except ValueError as exc:
        raise CrossmarginError(f"--server: {exc}") from None
    async with client as api:
        target, method = args.target_chain, args.method
        margin, capacity = await asyncio.gather(
            api.get_margin(args.address, target_chain=target, method=method),
            api.get_capacity(args.address, target_chain=target, method=method),
            return_exceptions=True,
        )
    if isinstance(margin, BaseException):
        raise margin
    if isinstance(capacity, ApiError):
        return Answer(margin.report, capacity.detail, margin.snapshot_id)
    if isinstance(capacity, BaseException):
        raise capacity
    return Answer(margin.report, capacity.report, margin.snapshot_id)


async def from_engine(
    args: argparse.Namespace, config: Config, history: HistoryStore | None
) -> Answer:
    """Both reports from one read of every chain (a batch of two requests)."""
    from crossmargin.engine import Engine, parse_account
    from crossmargin.pipeline.snapshot import Request

    async with Engine.connect(config, history) as engine:
        account, target = parse_account(args.address), engine.target(args.target_chain)
        requests = [Request("margin", account, target), Request("capacity", account, target)]
        margin, capacity = await engine.run(requests, args.method)
    report = margin.unwrap()
    assert isinstance(report, MarginReport)
    if capacity.error is not None:
        return Answer(report, str(capacity.error))
    assert isinstance(capacity.report, CapacityReport)
    return Answer(report, capacity.report)
