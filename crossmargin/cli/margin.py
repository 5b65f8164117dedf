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
from typing import TYPE_CHECKING, Literal, TypedDict

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
    p.add_argument(
        "--at",
        help="as of a past time (METHOD.md §15): unix seconds or ISO-8601 with a zone "
        "(2026-01-02T14:00:00Z); each chain at its last final block at or before it",
    )
    p.add_argument(
        "--blocks", help="as of explicit blocks: chain:number,... (every chain, or with --at)"
    )
    p.add_argument(
        "--addresses", help="the account's address on other chains (§1): chain:0x...,..."
    )
    p.add_argument("--config", help=config_help)
    p.add_argument("--json", action="store_true", help="print the API's JSON")
    p.add_argument("--db", help=db_help)


@dataclass(frozen=True, slots=True)
class AsOf:
    """The §15 time or blocks and the §1 addresses asked on the command line, parsed
    by the same functions as the API's query strings."""

    at: int | None
    blocks: list[tuple[str, int]]
    addresses: list[tuple[str, str]]

    @classmethod
    def of(cls, args: argparse.Namespace) -> AsOf:
        from crossmargin.core.inputs import parse_blocks, parse_pairs, parse_time

        return cls(
            None if args.at is None else parse_time(args.at, "--at"),
            parse_blocks(args.blocks) if args.blocks else [],
            parse_pairs(args.addresses, "--addresses") if args.addresses else [],
        )

    @property
    def blocks_text(self) -> str | None:
        """As the API's `blocks` query parameter."""
        return ",".join(f"{c}:{n}" for c, n in self.blocks) or None

    @property
    def addresses_text(self) -> str | None:
        """As the API's `addresses` query parameter."""
        return ",".join(f"{c}:{a}" for c, a in self.addresses) or None


class _Asked(TypedDict):
    """The keywords margin and capacity are both asked with."""

    target_chain: str | int | None
    method: Literal["var", "es"] | None
    at: int | None
    blocks: str | None
    addresses: str | None


async def from_server(args: argparse.Namespace) -> Answer:
    """Both reports from the server, concurrently; problems are the client's errors."""
    from crossmargin.client import ApiError, Client

    try:
        client = Client(args.server, key=os.environ.get(ENV_KEY) or None)
    except ValueError as exc:
        raise CrossmarginError(f"--server: {exc}") from None
    asked = AsOf.of(args)
    kw: _Asked = {
        "target_chain": args.target_chain,
        "method": args.method,
        "at": asked.at,
        "blocks": asked.blocks_text,
        "addresses": asked.addresses_text,
    }
    async with client as api:
        margin, capacity = await asyncio.gather(
            api.get_margin(args.address, **kw),
            api.get_capacity(args.address, **kw),
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
    from crossmargin.pipeline.figures import Request

    asked = AsOf.of(args)
    async with Engine.connect(config, history) as engine:
        account, target = parse_account(args.address), engine.target(args.target_chain)
        blocks, addresses = engine.blocks(asked.blocks), engine.addresses(account, asked.addresses)
        requests = [
            Request(kind, account, target, None, asked.at, blocks, addresses)
            for kind in ("margin", "capacity")
        ]
        margin, capacity = await engine.run(requests, args.method)
    report = margin.unwrap()
    assert isinstance(report, MarginReport)
    if capacity.error is not None:
        return Answer(report, str(capacity.error))
    assert isinstance(capacity.report, CapacityReport)
    return Answer(report, capacity.report)
