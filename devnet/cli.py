"""`crossmargin devnet` / `python -m devnet`: run the devnet until a signal."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from crossmargin.core.errors import CrossmarginError
from devnet.errors import DevnetError
from devnet.net import Devnet


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="crossmargin devnet",
        description="Start four local chains (anvil) in the state configs/devnet.toml "
        "describes, print their URLs and the demo accounts, and run until Ctrl-C/SIGTERM.",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        help="where manifest.json, crossmargin.toml and "
        "logs go (default: .devnet/ at the repo root)",
    )
    p.add_argument(
        "--no-keeper",
        action="store_true",
        help="do not re-post price rounds (feeds go stale after their heartbeat)",
    )
    p.add_argument(
        "--keeper-interval",
        type=float,
        metavar="SECONDS",
        help="seconds between keeper rounds (default: from the scenario)",
    )
    p.add_argument("--seed", type=int, help="override the scenario's seed")
    p.add_argument("--config", type=Path, help="config template (default configs/devnet.toml)")
    p.add_argument("--scenario", type=Path, help="scenario (default configs/devnet-scenario.toml)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_serve(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 130
    except CrossmarginError as exc:
        print(f"crossmargin devnet: {exc}", file=sys.stderr)
        return 1


async def _serve(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    stop = asyncio.Event()
    ready = False

    def on_signal() -> None:
        # Before ready: abort start-up (its cleanup stops the children). After: stop.
        if ready:
            stop.set()
        elif main_task is not None:
            main_task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        async with Devnet.start(
            state_dir=args.state_dir,
            seed=args.seed,
            keeper=not args.no_keeper,
            keeper_interval_s=args.keeper_interval,
            config_path=args.config,
            scenario_path=args.scenario,
        ) as net:
            ready = True
            print_summary(net)
            waiter = asyncio.create_task(net.wait())
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for t in (waiter, stopper):
                t.cancel()
            await asyncio.gather(waiter, stopper, return_exceptions=True)
            if waiter in done and waiter.exception() is not None:
                raise DevnetError(f"keeper failed: {waiter.exception()!r}")
            print("stopping the devnet", flush=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


def print_summary(net: Devnet) -> None:
    m = net.manifest
    out = [f"crossmargin devnet ready in {m.ready_after_s:.2f} s (seed {m.seed})", ""]
    for c in m.chains:
        out.append(f"  {c.name:<9} chain id {c.chain_id:<6} {c.rpc_url:<24} pid {c.pid}")
    out += ["", f"  config    {m.config_path}", f"  manifest  {net.manifest_path}", ""]
    out += [f"export {k}={v}" for k, v in m.env.items()]
    out += ["", "demo accounts (same address on every chain):"]
    for a in m.accounts:
        out.append(f"  {a.name:<6} {a.address}  {a.about}")
        for h in a.holdings:
            tag = " (debt)" if h.kind == "debt" else ""
            out.append(f"           {h.chain:<9} {h.amount:>10} {h.symbol}{tag}")
        for p in a.positions:
            where = f"Morpho {p.market}" if p.market else "Aave v3"
            tag = "" if p.collateral else " (not collateral)"
            out.append(
                f"           {p.chain:<9} {p.amount:>10} {p.symbol} {p.action} in {where}{tag}"
            )
    protocols = [
        f"  {c.name:<9} Aave v3 {c.aave_v3.pool_kind} {c.aave_v3.pool}"
        for c in m.chains
        if c.aave_v3 is not None
    ] + [
        f"  {c.name:<9} Morpho Blue {c.morpho_blue.morpho} "
        f"({', '.join(x.name for x in c.morpho_blue.markets)})"
        for c in m.chains
        if c.morpho_blue is not None
    ]
    if protocols:
        out += ["", "lending protocols (addresses in the manifest):", *protocols]
    n_feeds = sum(len(c.feeds) for c in m.chains)
    keeper = (
        f"re-posts {n_feeds} price feeds every {m.keeper.interval_s:g} s"
        if m.keeper.enabled
        else "off (feeds go stale after their heartbeat)"
    )
    out += ["", f"keeper: {keeper}", "Ctrl-C to stop."]
    print("\n".join(out), flush=True)
