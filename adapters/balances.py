"""Balances of many accounts on one chain at one pinned block, decoded so they never lie.

    plan = BalancePlan(reps, accounts)          # pure: the calls, token-level ones once
    results = await reader.read(plan.calls + other_calls, pin)
    reads = await plan.finish(reader, results[: len(plan.calls)], pin)
    reads["0xabc..."]                           # list[BalanceRead], one per rep read

Every (account, representation) slot decodes on its own: a revert, empty return data
(an EOA or a contract without the function), short or long data, or `decimals()` above
77 or different from config make that one position an error, never a 0. A token with
no `decimals()` at all is read with the configured decimals and flagged (`warning`).

Standards (RepresentationConfig.standard):
- `native`: Multicall3.getEthBalance(account), in the same multicall.
- `erc20`: balanceOf(account), and the token's decimals() and totalSupply() (once per
  token, in the same multicall: the plausibility check of METHOD.md §4 costs no request
  per account).
- `erc4626`: balanceOf(account) gives shares, then convertToAssets(shares) in a second,
  dependent multicall at the same pinned block hash, for the accounts holding shares
  only. convertToAssets is the vault's own rounding (down, per the standard), so the
  amount is exactly what the vault reports, whatever its virtual-share arithmetic;
  `decimals` are those of the underlying asset (vault.asset().decimals(), read in that
  second multicall). Recomputing shares * totalAssets / totalSupply ourselves would
  disagree with OpenZeppelin's virtual shares and assets, so we do not. The vault's
  totalSupply() (its shares) is read once in the first multicall, for §4.
- `native_alias` ERC-20s are not read where the chain's native coin is configured:
  the native balance already counts that money.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from adapters import calls as c
from adapters.calls import Call, CallResult
from adapters.evm import BlockPin, ChainReader
from crossmargin.core.config import RepresentationConfig
from crossmargin.core.errors import DecodeError
from crossmargin.core.memo import IdentityMemo


class BalanceRead(NamedTuple):
    """A representation's raw balance, or why it could not be read (never a silent 0).

    For erc4626, `raw_amount` is the underlying amount convertToAssets gives for `shares`.
    `warning` flags a figure that is read but rests on config (no decimals() on-chain).
    `total_supply` is the token's totalSupply() at the same block (a vault's: shares),
    or `supply_error` says why it could not be read; both None for a native coin (and
    in snapshots taken before it was read). Judged in crossmargin/pipeline/value.py (§4).
    An immutable NamedTuple: a batch of many accounts builds one per position."""

    rep: RepresentationConfig
    raw_amount: int | None
    error: str | None = None
    onchain_decimals: int | None = None
    warning: str | None = None
    shares: int | None = None
    total_supply: int | None = None
    supply_error: str | None = None


_TOKENS: IdentityMemo[dict[str, _Token]] = IdentityMemo()
_COLUMNS: IdentityMemo[tuple[list[_Token | None], list[bool], list[BalanceRead]]] = IdentityMemo()


@dataclass(frozen=True, slots=True)
class _Token:
    """What one token contributes once per batch: decimals (or why not), vault asset,
    totalSupply (or why not)."""

    decimals: int | None
    error: str | None
    warning: str | None
    asset: str | None = None  # erc4626: the underlying token
    supply: int | None = None
    supply_error: str | None = None


def counted(reps: Sequence[RepresentationConfig]) -> list[RepresentationConfig]:
    """The representations whose balances are read: native aliases are dropped where the
    chain's native coin is configured (the same money, counted once)."""
    native_chains = {r.chain for r in reps if r.standard == "native"}
    return [r for r in reps if not (r.native_alias and r.chain in native_chains)]


@dataclass(frozen=True, slots=True)
class _Head:
    """What a plan of some representations is before its accounts: the representations
    read, each token's call slots and its calls (decimals, totalSupply, an erc4626's
    asset), and each representation's target and kind; the same for every plan of those
    representations (each API request makes one), so made once (`_HEADS`)."""

    reps: list[RepresentationConfig]
    slots: dict[str, tuple[int, int, int | None]]
    calls: tuple[Call, ...]
    targets: list[str]
    native: list[bool]

    @classmethod
    def of(cls, given: Sequence[RepresentationConfig]) -> _Head:
        reps = counted(given)
        calls: list[Call] = []
        slots: dict[str, tuple[int, int, int | None]] = {}
        for rep in reps:
            if rep.standard == "native" or rep.address in slots:
                continue
            dec = len(calls)
            calls += [c.decimals(rep.address), c.total_supply(rep.address)]
            asset_slot = None
            if rep.standard == "erc4626":
                asset_slot = len(calls)
                calls.append(c.asset(rep.address))
            slots[rep.address] = (dec, dec + 1, asset_slot)
        targets = [c.MULTICALL3 if r.standard == "native" else r.address for r in reps]
        native = [r.standard == "native" for r in reps]
        return cls(reps, slots, tuple(calls), targets, native)


_HEADS: IdentityMemo[_Head] = IdentityMemo()


class BalancePlan:
    """Calls for accounts x representations of one chain; token-level calls come first,
    then one call per (account, representation), account-major."""

    def __init__(self, reps: Sequence[RepresentationConfig], accounts: Sequence[str]) -> None:
        head = _HEADS.get(tuple(reps), (), lambda: _Head.of(reps))
        self.reps = head.reps  # shared by every plan of these representations: read-only
        self.accounts = list(accounts)
        self._token_slots = head.slots
        calls = list(head.calls)
        self._base = len(calls)
        # one call per (account, representation), account-major: the account's ABI word
        # is made once, its two calldatas by concatenation, the Calls in one C loop
        targets, native = head.targets, head.native
        words = [c.address_word(a) for a in self.accounts]
        by_token = [c.SEL_BALANCE_OF + w for w in words]
        if any(native):
            by_eth = [c.SEL_GET_ETH_BALANCE + w for w in words]
            datas = [e if n else t for e, t in zip(by_eth, by_token, strict=True) for n in native]
        else:
            datas = [t for t in by_token for _ in native]
        calls += c.make_calls(targets * len(words), datas)
        self.calls = calls

    def _tokens(self, results: Sequence[CallResult]) -> dict[str, _Token]:
        """Each token's decimals, vault asset and supply, decoded once per distinct
        answer of these representations (read-only: every batch with those answers,
        such as each API request of a block, shares it)."""
        head = tuple(results[: self._base])
        return _TOKENS.get(tuple(self.reps), head, lambda: self._decode_tokens(head))

    def _columns(
        self, tokens: dict[str, _Token]
    ) -> tuple[list[_Token | None], list[bool], list[BalanceRead]]:
        """Per representation: its token, whether its answer takes the common path, and
        its zero read; once per token table (shared, read-only, as `_tokens`)."""

        def make() -> tuple[list[_Token | None], list[bool], list[BalanceRead]]:
            reps = self.reps
            row_tokens = [tokens.get(r.address) for r in reps]
            zero = c.ZERO_RESULT
            zeros = [_balance(r, zero, t) for r, t in zip(reps, row_tokens, strict=True)]
            # The common case inline (a token with good decimals, one 32-byte word back);
            # everything else through _balance, which explains what is wrong.
            plain = [
                t is not None and t.error is None and r.standard == "erc20"
                for r, t in zip(reps, row_tokens, strict=True)
            ]
            return row_tokens, plain, zeros

        return _COLUMNS.get((*self.reps, tokens), (), make)

    def _decode_tokens(self, results: Sequence[CallResult]) -> dict[str, _Token]:
        out: dict[str, _Token] = {}
        for rep in self.reps:
            if rep.standard == "native" or rep.address in out:
                continue
            dec_slot, supply_slot, asset_slot = self._token_slots[rep.address]
            try:
                supply: int | None = c.decode_uint(
                    results[supply_slot], f"{rep.symbol} totalSupply()"
                )
                supply_error = None
            except DecodeError as exc:
                supply, supply_error = None, str(exc)
            if asset_slot is not None:
                try:
                    asset = c.decode_address(results[asset_slot], f"{rep.symbol} asset()")
                except DecodeError as exc:
                    out[rep.address] = _Token(None, str(exc), None)
                    continue
                # decimals: the underlying asset's, read in `finish`
                out[rep.address] = _Token(None, None, None, asset, supply, supply_error)
                continue
            token = _decimals_of(rep, results[dec_slot])
            out[rep.address] = replace(token, supply=supply, supply_error=supply_error)
        return out

    def decode(self, results: Sequence[CallResult]) -> dict[str, list[BalanceRead]]:
        """Decode without the erc4626 conversion (a vault holding is an error "shares not
        converted" until `finish` converts it).

        Most positions are empty: a zero word decodes the same for every account, so
        each representation's zero read is made once and shared (BalanceRead is
        immutable), and an account with nothing on the chain costs one C-level count.
        Any other answer is decoded once per representation too (equal answers, one
        shared read)."""
        if len(results) != len(self.calls):
            raise ValueError(f"{len(results)} results for {len(self.calls)} calls")
        reps = self.reps
        width = len(reps)
        row_tokens, plain, zeros = self._columns(self._tokens(results))
        zero = c.ZERO_RESULT
        # per column, the read of each distinct answer: accounts with equal answers get
        # the same object (compute_many computes accounts with the same reads once)
        seen: list[dict[CallResult, BalanceRead]] = [{} for _ in reps]
        columns = list(zip(reps, row_tokens, plain, zeros, seen, strict=True))
        frm = int.from_bytes
        out: dict[str, list[BalanceRead]] = {}
        pos = self._base
        for account in self.accounts:
            got = results[pos : pos + width]
            pos += width
            if got.count(zero) == width:
                out[account] = zeros.copy()
                continue
            row: list[BalanceRead] = []
            for (rep, token, fast, empty, known), r in zip(columns, got, strict=True):
                if r == zero:
                    row.append(empty)
                    continue
                read = known.get(r)
                if read is None:
                    if fast and r.success and len(r.data) == 32 and token is not None:
                        read = BalanceRead(
                            rep,
                            frm(r.data, "big"),
                            None,
                            token.decimals,
                            token.warning,
                            None,
                            token.supply,
                            token.supply_error,
                        )
                    else:
                        read = _balance(rep, r, token)
                    known[r] = read
                row.append(read)
            out[account] = row
        return out

    async def finish(
        self, reader: ChainReader, results: Sequence[CallResult], pin: BlockPin
    ) -> dict[str, list[BalanceRead]]:
        """Decode, then convert vault shares to assets in one more multicall at `pin`."""
        out = self.decode(results)
        columns = [i for i, r in enumerate(self.reps) if r.standard == "erc4626"]
        pending = [
            (account, i, b)
            for account, row in out.items()
            for i in columns
            if (b := row[i]).shares and b.raw_amount is None
        ]
        if not pending:
            return out
        tokens = self._tokens(results)
        vaults = {r.address: tokens[r.address].asset for r in self.reps if r.standard == "erc4626"}
        calls: list[Call] = []
        asset_slots: dict[str, int] = {}
        for vault, underlying in vaults.items():
            if underlying is not None:
                asset_slots[vault] = len(calls)
                calls.append(c.decimals(underlying))
        conv_base = len(calls)
        calls += [c.convert_to_assets(b.rep.address, b.shares or 0) for _, _, b in pending]
        second = await reader.read(calls, pin)
        underlying_dec: dict[str, _Token | str] = {
            vault: _decimals_of_underlying(vault, second[slot])
            for vault, slot in asset_slots.items()
        }
        for k, (account, i, b) in enumerate(pending):
            converted = _converted(b, second[conv_base + k], underlying_dec.get(b.rep.address))
            out[account][i] = converted._replace(
                total_supply=b.total_supply, supply_error=b.supply_error
            )
        return out


def _decimals_of(rep: RepresentationConfig, result: CallResult) -> _Token:
    """decimals(): a revert with no data means the optional function is absent (EIP-20):
    use config and flag it. Empty data from a "successful" call means no code at all."""
    if not result.success and not result.data:
        return _Token(
            rep.decimals,
            None,
            f"{rep.symbol}: no decimals() on-chain, config's {rep.decimals} used",
        )
    if result.success and not result.data:
        return _Token(None, f"{rep.symbol}: no contract code at {rep.address}", None)
    try:
        onchain = c.decode_decimals(result)
    except DecodeError as exc:
        return _Token(None, f"{rep.symbol}: {exc}", None)
    if onchain != rep.decimals:
        return _Token(
            onchain, f"{rep.symbol}: decimals() is {onchain}, config says {rep.decimals}", None
        )
    return _Token(onchain, None, None)


def _decimals_of_underlying(vault: str, result: CallResult) -> _Token | str:
    try:
        return _Token(c.decode_decimals(result), None, None)
    except DecodeError as exc:
        return f"vault {vault} asset: {exc}"


def _balance(rep: RepresentationConfig, result: CallResult, token: _Token | None) -> BalanceRead:
    if token is not None and token.error is not None:
        return BalanceRead(rep, None, token.error, token.decimals)
    try:
        raw = c.decode_uint(result, f"{rep.symbol} balance")
    except DecodeError as exc:
        return BalanceRead(rep, None, str(exc))
    if token is None:  # native
        return BalanceRead(rep, raw, None, rep.decimals)
    supply, why = token.supply, token.supply_error
    if rep.standard == "erc4626":
        # shares; the amount comes from convertToAssets in `finish` (0 shares: 0 assets)
        if raw == 0:
            return BalanceRead(rep, 0, None, None, None, 0, supply, why)
        return BalanceRead(
            rep, None, f"{rep.symbol}: shares not converted", None, None, raw, supply, why
        )
    return BalanceRead(rep, raw, None, token.decimals, token.warning, None, supply, why)


def _converted(b: BalanceRead, result: CallResult, underlying: _Token | str | None) -> BalanceRead:
    rep = b.rep
    if underlying is None:
        return BalanceRead(rep, None, f"{rep.symbol}: vault asset() unreadable", shares=b.shares)
    if isinstance(underlying, str):
        return BalanceRead(rep, None, underlying, shares=b.shares)
    if underlying.decimals != rep.decimals:
        return BalanceRead(
            rep,
            None,
            f"{rep.symbol}: underlying decimals() is {underlying.decimals}, "
            f"config says {rep.decimals}",
            underlying.decimals,
            shares=b.shares,
        )
    try:
        amount = c.decode_uint(result, f"{rep.symbol} convertToAssets")
    except DecodeError as exc:
        return BalanceRead(rep, None, str(exc), underlying.decimals, shares=b.shares)
    return BalanceRead(rep, amount, None, underlying.decimals, None, b.shares)


class TokenMeta(NamedTuple):
    """name(), symbol() (ABI string or bytes32) and decimals() of a token; each None with
    a line in `errors` when it cannot be read."""

    address: str
    name: str | None
    symbol: str | None
    decimals: int | None
    errors: tuple[str, ...] = ()


async def read_token_meta(
    reader: ChainReader, tokens: Sequence[str], pin: BlockPin
) -> list[TokenMeta]:
    """Metadata of many tokens in one multicall at `pin` (for config checks and display)."""
    calls = [f(t) for t in tokens for f in (c.name, c.symbol, c.decimals)]
    results = await reader.read(calls, pin)
    out: list[TokenMeta] = []
    for i, token in enumerate(tokens):
        errors: list[str] = []
        texts: list[str | None] = []
        for what, result in zip(("name()", "symbol()"), results[3 * i : 3 * i + 2], strict=True):
            try:
                texts.append(c.decode_text(result, what))
            except DecodeError as exc:
                texts.append(None)
                errors.append(str(exc))
        try:
            dec: int | None = c.decode_decimals(results[3 * i + 2])
        except DecodeError as exc:
            dec = None
            errors.append(str(exc))
        out.append(TokenMeta(token, texts[0], texts[1], dec, tuple(errors)))
    return out
