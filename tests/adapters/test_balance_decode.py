"""BalancePlan.decode without a chain: equal answers give the very same read, so
`compute_many` finds accounts with equal holdings read in one pass alike."""

from __future__ import annotations

from pathlib import Path

from adapters.balances import BalancePlan
from adapters.calls import ZERO_RESULT, CallResult
from crossmargin.core.config import load_config
from crossmargin.pipeline import figures
from crossmargin.pipeline.read import ChainState
from oracle.validity import FeedReading

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_config(ROOT / "configs" / "devnet.toml", env={})


def _word(n: int) -> CallResult:
    return CallResult(True, n.to_bytes(32, "big"))


def test_equal_answers_share_one_read_and_make_twins() -> None:
    chain = CONFIG.chains[0]
    reps = [r for r in CONFIG.representations if r.chain == chain.name]
    accounts = [f"0x{k:040x}" for k in (1, 2, 3)]
    plan = BalancePlan(reps, accounts)
    width = len(plan.reps)
    token = [_word(10**30)] * plan._base  # a large totalSupply()
    for rep in plan.reps:
        if rep.standard == "erc20":
            token[plan._token_slots[rep.address][0]] = _word(rep.decimals)  # as configured
    held = [_word(5 * 10**17)] + [ZERO_RESULT] * (width - 1)  # the first column only
    other = [_word(6 * 10**17)] + [ZERO_RESULT] * (width - 1)
    reads = plan.decode(token + held + held + other)
    a, b, c = (reads[x] for x in accounts)
    assert a[0] is b[0]
    assert a[0].raw_amount == 5 * 10**17
    assert c[0] is not a[0]
    assert c[0].raw_amount == 6 * 10**17
    assert all(x is y for x, y in zip(a[1:], c[1:], strict=True))  # zero reads, shared
    feeds: list[FeedReading] = []  # one read's: shared by its accounts
    states = {x: [ChainState(chain, None, "down", reads[x], feeds)] for x in accounts}
    assert figures._twins(accounts, states) == {accounts[1]: accounts[0]}


def test_token_answers_decoded_once_per_distinct_answer() -> None:
    """Plans of the same representations (each API request builds its own) share the
    token table while the token answers are equal, and never across a changed one."""
    chain = CONFIG.chains[0]
    reps = [r for r in CONFIG.representations if r.chain == chain.name]

    def token_answers(plan: BalancePlan, supply: int) -> list[CallResult]:
        token = [_word(supply)] * plan._base
        for rep in plan.reps:
            if rep.standard == "erc20":
                token[plan._token_slots[rep.address][0]] = _word(rep.decimals)
        return token

    one, two = BalancePlan(reps, ["0x" + "1" * 40]), BalancePlan(reps, ["0x" + "2" * 40])
    erc20 = next(i for i, r in enumerate(one.reps) if r.standard == "erc20")
    empty = [ZERO_RESULT] * len(one.reps)
    first = one.decode(token_answers(one, 10**30) + empty)["0x" + "1" * 40]
    again = two.decode(token_answers(two, 10**30) + empty)["0x" + "2" * 40]
    moved = two.decode(token_answers(two, 10**31) + empty)["0x" + "2" * 40]
    assert one._tokens(token_answers(one, 10**30)) is two._tokens(token_answers(two, 10**30))
    assert again[erc20] is first[erc20]  # the zero read of an unchanged token, shared
    assert first[erc20].total_supply == 10**30
    assert moved[erc20].total_supply == 10**31  # a new supply: decoded anew
