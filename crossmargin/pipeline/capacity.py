"""Borrowing capacity (METHOD.md §8) of an assessed account, per borrow asset."""

from __future__ import annotations

from fractions import Fraction

from aggregator import CapacityNotMonotone, borrowing_capacity
from crossmargin.core.codes import Code
from crossmargin.core.config import Config
from crossmargin.core.errors import InputError, Refused
from crossmargin.pipeline.margin import margin_report
from crossmargin.pipeline.report import Capacity, CapacityReport, ChainRef, Warning_, fixed6
from crossmargin.pipeline.risk import asset_params, margin_params, positions_of
from crossmargin.pipeline.value import Assessment


def asset_index(config: Config, symbol: str) -> int:
    """The config index of an asset symbol; an unknown one is the caller's mistake."""
    symbols = [a.symbol for a in config.assets]
    if symbol not in symbols:
        raise InputError(f"unknown asset {symbol!r}; known: {', '.join(symbols)}")
    return symbols.index(symbol)


def capacity_report(a: Assessment, target: str, asset: str | None = None) -> CapacityReport:
    """§8 for one borrow asset, or for every configured asset when none is named.

    Capacity is 0 for every asset when debt cannot be valued (§4: an unavailable chain
    that can hold debt, unpriced or unreadable debt), also for an unpriced borrow asset
    (0 USD is 0 units at any price); otherwise null with a reason when the borrow asset
    is unpriced.
    """
    config = a.config
    chain = config.chain(target)
    symbols = [asset] if asset else [x.symbol for x in config.assets]
    indices = [asset_index(config, s) for s in symbols]
    positions = positions_of(config, a.valued)
    params = margin_params(config, chain.name)
    assets = asset_params(config, a.estimates)
    warnings = list(a.warnings)
    rows: list[Capacity] = []
    free: str | None = None
    for symbol, index in zip(symbols, indices, strict=True):
        price = a.prices[symbol].debt
        if a.debt_unknown:
            rows.append(Capacity(asset=symbol, capacity_usd=fixed6(0), amount=fixed6(0),
                                 price_usd=fixed6(price),
                                 reason="debt cannot be valued: capacity 0"))  # fmt: skip
            continue
        if price is None:
            rows.append(Capacity(asset=symbol, capacity_usd=None, amount=None, price_usd=None,
                                 reason=f"{symbol} has no valid price"))  # fmt: skip
            continue
        try:
            cap = borrowing_capacity(positions, assets, params, index)
        except CapacityNotMonotone as exc:
            raise Refused(
                f"free margin is not decreasing in new {symbol} debt for these parameters; "
                "capacity is not defined"
            ) from exc
        usd, reason = Fraction(cap.usd), None
        local = a.available_borrows(chain.chain_id, symbol)  # §12 cap on the target, if any
        if local is not None and local < usd:  # §12: never above the protocol's own
            usd, reason = local, f"at the protocol's own available borrows on {chain.name}"
        rows.append(Capacity(asset=symbol, capacity_usd=fixed6(usd), amount=fixed6(usd / price),
                             price_usd=fixed6(price), reason=reason))  # fmt: skip
    if a.debt_unknown:
        warnings.append(
            Warning_(code=Code.CAPACITY_ZERO, detail="debt cannot be valued (§4): capacity 0")
        )
    else:
        free = margin_report(a, chain.name).totals.free_margin_usd
    return CapacityReport(
        account=a.account,
        target_chain=ChainRef(chain_id=chain.chain_id, name=chain.name),
        status=Code.PARTIAL if a.partial else Code.OK,
        as_of=a.as_of,
        free_margin_usd=free,
        capacities=rows,
        warnings=warnings,
    )
