"""Benchmark: valuation (§3-§7 and the margin report) of a batch of accounts, the batch
entry points against a per-account loop over the same states, in the same run.

Run from the repository root:  .venv/bin/python bench/valuation.py [n_accounts]
States are built as the chain reader returns them for one batch (devnet config, 4
chains, one pin and one set of feed readings per chain shared by every account), a
mix of empty, wallet-only and collateral-and-debt accounts. No chain, no I/O: this
measures the pure pipeline the engine calls after its reads.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: this file's folder would shadow the package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from adapters.balances import BalanceRead
from adapters.calls import RoundData
from adapters.evm import BlockPin
from crossmargin.core.config import Config, load_config
from crossmargin.pipeline.margin import margin_report, margin_reports
from crossmargin.pipeline.read import ChainState
from crossmargin.pipeline.report import MarginReport
from crossmargin.pipeline.value import assess, assess_many
from oracle.estimation import config_estimates
from oracle.validity import FeedReading

ROOT = Path(__file__).resolve().parents[1]
NOW = 1_800_000_000
PRICES = {"ETH": 3000 * 10**8, "BTC": 60_000 * 10**8, "USDC": 99_990_000}


def _feeds(config: Config, chain: str, chain_id: int) -> list[FeedReading]:
    return [
        FeedReading(
            a.symbol,
            chain_id,
            f.address,
            f.decimals,
            NOW,
            RoundData(7, PRICES[a.symbol], NOW - 60, NOW - 60, 7),
            None,
        )
        for a in config.assets
        for f in a.feeds
        if f.chain == chain
    ]


def make_states(config: Config, n: int, seed: int = 11) -> dict[str, list[ChainState]]:
    """n accounts: a third empty, a third wallet-only, a third with collateral and debt."""
    rng = random.Random(seed)
    shared = {
        c.name: (
            BlockPin(c.chain_id, 1000, "0x" + "ab" * 32, NOW),
            _feeds(config, c.name, c.chain_id),
        )
        for c in config.chains
    }
    out: dict[str, list[ChainState]] = {}
    for k in range(n):
        account = f"0x{k + 1:040x}"
        mix = k % 3
        states = []
        for chain in config.chains:
            pin, feeds = shared[chain.name]
            balances = []
            for rep in config.representations:
                if rep.chain != chain.name:
                    continue
                held = mix == 2 or (mix == 1 and rep.kind == "collateral")
                raw = rng.randrange(1, 10 ** (rep.decimals + 3)) if held else 0
                if rep.kind == "debt" and held:
                    raw //= 20
                supply = None if rep.address == "native" else 10 ** (rep.decimals + 12)
                balances.append(BalanceRead(rep, raw, None, rep.decimals, None, None, supply))
            states.append(ChainState(chain, pin, None, balances, feeds))
        out[account] = states
    return out


def main(n: int = 1_000) -> None:
    config = load_config(ROOT / "configs" / "devnet.toml", env={})
    target = config.settlement_chain
    est = config_estimates(config)
    states = make_states(config, n)
    print(f"{n:,} accounts, {len(config.chains)} chains, {len(config.representations)} reps")

    start = time.perf_counter()
    loop = [margin_report(assess(config, s, acct, est), target) for acct, s in states.items()]
    loop_s = time.perf_counter() - start
    print(f"per-account loop: {loop_s:.3f} s, {n / loop_s:,.0f} accounts/s")

    start = time.perf_counter()
    batch = margin_reports(assess_many(config, states, est), target)
    batch_s = time.perf_counter() - start
    print(f"batch:            {batch_s:.3f} s, {n / batch_s:,.0f} accounts/s")

    assert _dump(batch) == _dump(loop), "batch and loop reports differ"
    print(f"valuation: {n / batch_s:,.0f} accounts/s, {loop_s / batch_s:.2f}x the per-account loop")


def _dump(reports: list[MarginReport]) -> list[str]:
    return [r.model_dump_json() for r in reports]


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000)
