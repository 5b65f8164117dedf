"""The hand codec for aggregate3 agrees with eth_abi (the reference), and never reads
malformed data as a number."""

from __future__ import annotations

import pytest
from eth_abi import decode, encode
from hypothesis import given
from hypothesis import strategies as st

from adapters import calls as c
from crossmargin.core.errors import DecodeError

addresses = st.binary(min_size=20, max_size=20).map(lambda b: c.checksum("0x" + b.hex()))


@given(st.lists(st.tuples(addresses, st.binary(max_size=100)), max_size=20))
def test_encode_matches_eth_abi(items: list[tuple[str, bytes]]) -> None:
    calls = [c.Call(t, d) for t, d in items]
    ours = c.encode_aggregate3(calls)
    ref = c.SEL_AGGREGATE3 + encode(["(address,bool,bytes)[]"], [[(t, True, d) for t, d in items]])
    assert ours == ref


@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=200)), max_size=20))
def test_decode_matches_eth_abi(results: list[tuple[bool, bytes]]) -> None:
    payload = encode(["(bool,bytes)[]"], [results])
    decoded = c.decode_aggregate3(payload, len(results))
    assert [(r.success, r.data) for r in decoded] == results
    assert decode(["(bool,bytes)[]"], payload)[0] == tuple(results)


def test_decode_rejects_count_mismatch_and_truncation() -> None:
    payload = encode(["(bool,bytes)[]"], [[(True, b"\x01" * 32), (True, b"\x02" * 32)]])
    with pytest.raises(DecodeError, match="2 results for 3 calls"):
        c.decode_aggregate3(payload, 3)
    with pytest.raises(DecodeError):
        c.decode_aggregate3(payload[:-40], 2)
    with pytest.raises(DecodeError):
        c.decode_aggregate3(b"", 0)


def test_uint_decoding_never_reads_empty_as_zero() -> None:
    with pytest.raises(DecodeError, match="expected 32 bytes"):
        c.decode_uint(c.CallResult(True, b""), "balanceOf")
    with pytest.raises(DecodeError, match="reverted"):
        c.decode_uint(c.CallResult(False, b"\x00" * 32), "balanceOf")
    huge = (1 << 256) - 1
    assert c.decode_uint(c.CallResult(True, huge.to_bytes(32, "big")), "balanceOf") == huge
    with pytest.raises(DecodeError, match="above 77"):
        c.decode_decimals(c.CallResult(True, (78).to_bytes(32, "big")))


def test_round_data_signed_answer() -> None:
    data = encode(["uint80", "int256", "uint256", "uint256", "uint80"], [7, -5, 1, 2, 7])
    rd = c.decode_round_data(c.CallResult(True, data))
    assert (rd.round_id, rd.answer, rd.started_at, rd.updated_at, rd.answered_in_round) == (
        7,
        -5,
        1,
        2,
        7,
    )
    with pytest.raises(DecodeError):
        c.decode_round_data(c.CallResult(True, data[:-1]))


@given(st.lists(st.integers(min_value=0, max_value=(1 << 256) - 1), min_size=1, max_size=50))
def test_uniform_fast_path_matches_eth_abi(values: list[int]) -> None:
    """The fast path (every call one 32-byte word) decodes exactly as the general one."""
    payload = encode(["(bool,bytes)[]"], [[(True, v.to_bytes(32, "big")) for v in values]])
    decoded = c.decode_aggregate3(payload, len(values))
    assert [c.decode_uint(r, "x") for r in decoded] == values
    # one failure among them sends the whole payload down the general path, still exact
    mixed = encode(
        ["(bool,bytes)[]"], [[(True, v.to_bytes(32, "big")) for v in values] + [(False, b"")]]
    )
    assert c.decode_aggregate3(mixed, len(values) + 1)[-1] == c.CallResult(False, b"")


def test_text_decoding_bytes32_and_strings() -> None:
    bytes32 = c.CallResult(True, b"MKR".ljust(32, b"\0"))
    assert c.decode_text(bytes32, "symbol()") == "MKR"
    assert (
        c.decode_text(c.CallResult(True, encode(["string"], ["USD Coin"])), "name()") == "USD Coin"
    )
    for bad in (b"", b"\x00" * 31, encode(["string"], ["x"])[:-1], b"\xff".ljust(32, b"\0")):
        with pytest.raises(DecodeError):
            c.decode_text(c.CallResult(True, bad), "symbol()")
    with pytest.raises(DecodeError, match="reverted"):
        c.decode_text(c.CallResult(False, b""), "symbol()")


def test_address_decoding_rejects_dirty_words() -> None:
    token = "0x" + "11" * 20
    word = bytes(12) + bytes.fromhex(token[2:])
    assert c.decode_address(c.CallResult(True, word), "asset()") == c.checksum(token)
    with pytest.raises(DecodeError, match="high bytes"):
        c.decode_address(c.CallResult(True, b"\x01" + word[1:]), "asset()")


@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=70)), min_size=1, max_size=20))
def test_layouts_multicall3_does_not_produce_take_the_general_path(
    results: list[tuple[bool, bytes]],
) -> None:
    """The fast paths only accept Multicall3's canonical layout; the same results laid
    out otherwise (elements in reverse order, offsets pointing at them) decode the same
    through the checked general loop, and a success flag other than 0/1 is refused."""
    canonical = encode(["(bool,bytes)[]"], [results])
    n = len(results)
    first = 64 + 32 * n
    offsets = [int.from_bytes(canonical[64 + 32 * i : 96 + 32 * i], "big") for i in range(n)]
    ends = [*offsets[1:], len(canonical) - 64]
    elements = [canonical[64 + o : 64 + e] for o, e in zip(offsets, ends, strict=True)]
    body, heads, at = b"", [0] * n, 32 * n
    for i in reversed(range(n)):
        heads[i] = at
        body += elements[i]
        at += len(elements[i])
    shuffled = canonical[:64] + b"".join(h.to_bytes(32, "big") for h in heads) + body
    assert len(shuffled) == len(canonical)
    assert n == 1 or canonical[:first] != shuffled[:first]  # offsets differ: not canonical
    want = [c.CallResult(ok, data) for ok, data in results]
    assert c.decode_aggregate3(canonical, n) == want
    assert c.decode_aggregate3(shuffled, n) == want
    bad = bytearray(canonical)
    bad[64 + offsets[0] + 31] = 2  # the first element's success flag
    with pytest.raises(DecodeError, match="success flag 2"):
        c.decode_aggregate3(bytes(bad), n)


def test_zero_word_is_one_shared_result_and_calls_are_made_in_bulk() -> None:
    """A successful zero word decodes to `ZERO_RESULT` itself (decoders may test it by
    identity); a reverted call with a zero word does not. `make_calls` makes the same
    Calls as the constructor."""
    payload = encode(
        ["(bool,bytes)[]"], [[(True, bytes(32)), (False, bytes(32)), (True, bytes(64))]]
    )
    ok, reverted, longer = c.decode_aggregate3(payload, 3)
    assert ok is c.ZERO_RESULT
    assert reverted == c.CallResult(False, bytes(32))
    assert reverted is not c.ZERO_RESULT
    assert longer == c.CallResult(True, bytes(64))
    uniform = encode(["(bool,bytes)[]"], [[(True, bytes(32))] * 3])
    assert all(r is c.ZERO_RESULT for r in c.decode_aggregate3(uniform, 3))
    targets, datas = ["0x" + "11" * 20, c.MULTICALL3], [b"\1", b"\2\3"]
    made = c.make_calls(targets, datas)
    assert made == [c.Call(t, d) for t, d in zip(targets, datas, strict=True)]
    assert all(type(x) is c.Call for x in made)
    assert c.address_word(targets[0]) == bytes(12) + b"\x11" * 20
    for bad in ("11" * 21, "0x" + "11" * 19):  # no 0x prefix (42 characters); 19 bytes
        with pytest.raises(ValueError, match="not a 20-byte address"):
            c.address_word(bad)
