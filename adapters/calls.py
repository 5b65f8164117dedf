"""Calls as frozen values; encoding and decoding are pure functions, separate from sending.

The Multicall3 `aggregate3` codec is written by hand: it is a fixed, simple layout, and
eth_abi is ~40x slower on big batches (measured). Every decoder here rejects malformed
data with `DecodeError` rather than reading it as zero.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import repeat
from typing import NamedTuple, cast

from cchecksum import to_checksum_address
from eth_utils.abi import function_signature_to_4byte_selector

from crossmargin.core.errors import DecodeError

MULTICALL3 = "0xcA11bde05977b3631167028862bE2a173976CA11"

SEL_AGGREGATE3 = function_signature_to_4byte_selector("aggregate3((address,bool,bytes)[])")
SEL_GET_ETH_BALANCE = function_signature_to_4byte_selector("getEthBalance(address)")
SEL_BALANCE_OF = function_signature_to_4byte_selector("balanceOf(address)")
SEL_DECIMALS = function_signature_to_4byte_selector("decimals()")
SEL_SYMBOL = function_signature_to_4byte_selector("symbol()")
SEL_LATEST_ROUND_DATA = function_signature_to_4byte_selector("latestRoundData()")
SEL_NAME = function_signature_to_4byte_selector("name()")
SEL_ASSET = function_signature_to_4byte_selector("asset()")
SEL_CONVERT_TO_ASSETS = function_signature_to_4byte_selector("convertToAssets(uint256)")
SEL_TOTAL_SUPPLY = function_signature_to_4byte_selector("totalSupply()")

_WORD = 32
_TRUE = (1).to_bytes(_WORD, "big")
_TAIL_OFFSET = (3 * _WORD).to_bytes(_WORD, "big")


class Call(NamedTuple):
    """One contract read: target address (checksummed) and ABI-encoded calldata.

    Immutable values; NamedTuple rather than a frozen dataclass because a batch makes
    tens of thousands of them and a frozen dataclass is ~5x slower to construct."""

    target: str
    data: bytes


class CallResult(NamedTuple):
    """What Multicall3 reported for one call: `success` false means the call reverted."""

    success: bool
    data: bytes


def _word(n: int) -> bytes:
    return n.to_bytes(_WORD, "big")


ZERO_WORD = bytes(_WORD)
ZERO_RESULT = CallResult(True, ZERO_WORD)
"""The result most reads return (a zero balance): decode_aggregate3 hands out this one
object for it, so a decoder may test it by identity (equal values decode the same)."""

_tuple_new = tuple.__new__


def make_calls(targets: Iterable[str], datas: Iterable[bytes]) -> list[Call]:
    """`[Call(t, d) for t, d in zip(targets, datas)]` without a Python frame per call: a
    batch plans tens of thousands, and NamedTuple's generated `__new__` is half the cost."""
    return cast(list[Call], list(map(_tuple_new, repeat(Call), zip(targets, datas, strict=True))))


_ADDRESS_WORDS: dict[str, bytes] = {}


def address_word(address: str) -> bytes:
    """ABI word of an address; memoised (a batch names the same few tokens thousands of
    times), bounded so a long-running service does not grow it without limit."""
    word = _ADDRESS_WORDS.get(address)
    if word is None:
        word = bytes(12) + bytes.fromhex(address[2:])
        if len(word) != _WORD or not address.startswith("0x"):
            raise ValueError(f"not a 20-byte address: {address!r}")
        if len(_ADDRESS_WORDS) >= 1 << 16:
            _ADDRESS_WORDS.clear()
        _ADDRESS_WORDS[address] = word
    return word


def balance_of(token: str, owner: str) -> Call:
    return Call(token, SEL_BALANCE_OF + address_word(owner))


def eth_balance(owner: str) -> Call:
    """Native balance read inside the same multicall (Multicall3.getEthBalance)."""
    return Call(MULTICALL3, SEL_GET_ETH_BALANCE + address_word(owner))


def decimals(token: str) -> Call:
    return Call(token, SEL_DECIMALS)


def symbol(token: str) -> Call:
    return Call(token, SEL_SYMBOL)


def name(token: str) -> Call:
    return Call(token, SEL_NAME)


def total_supply(token: str) -> Call:
    """totalSupply(): required by EIP-20 (unlike decimals()); an ERC-4626 vault's shares."""
    return Call(token, SEL_TOTAL_SUPPLY)


def latest_round_data(feed: str) -> Call:
    return Call(feed, SEL_LATEST_ROUND_DATA)


def asset(vault: str) -> Call:
    """ERC-4626 asset(): the underlying token."""
    return Call(vault, SEL_ASSET)


def convert_to_assets(vault: str, shares: int) -> Call:
    """ERC-4626 convertToAssets(shares): rounds down, as the standard requires."""
    return Call(vault, SEL_CONVERT_TO_ASSETS + _word(shares))


_ELEMENT_HEADS: dict[str, bytes] = {}  # target -> address word, allowFailure, data offset
_SIZES: dict[int, tuple[bytes, bytes, int]] = {}  # calldata size -> its word, padding, tail size


def encode_aggregate3(calls: list[Call]) -> bytes:
    """aggregate3(Call3[]) calldata with allowFailure=true for every call.

    Per call only its calldata is new: the 96 bytes before it are memoised per target,
    its length word and padding per size (both bounded like `address_word`)."""
    n = len(calls)
    heads: list[bytes] = []
    tails: list[bytes] = []
    offset = n * _WORD
    pre, sizes = _ELEMENT_HEADS, _SIZES
    for target, data in calls:
        head = pre.get(target)
        if head is None:
            if len(pre) >= 1 << 16:
                pre.clear()
            head = pre[target] = address_word(target) + _TRUE + _TAIL_OFFSET
        size = sizes.get(len(data))
        if size is None:
            if len(sizes) >= 1 << 12:
                sizes.clear()
            k = len(data)
            pad = (-k) % _WORD
            size = sizes[k] = (k.to_bytes(_WORD, "big"), bytes(pad), 4 * _WORD + k + pad)
        heads.append(offset.to_bytes(_WORD, "big"))
        tails += (head, size[0], data, size[1])
        offset += size[2]
    return b"".join([SEL_AGGREGATE3, _word(_WORD), _word(n), *heads, *tails])


def _read_word(data: bytes, at: int) -> int:
    if at < 0 or at + _WORD > len(data):
        raise DecodeError(f"return data too short: need {at + _WORD} bytes, have {len(data)}")
    return int.from_bytes(data[at : at + _WORD], "big")


def decode_aggregate3(data: bytes, expected: int) -> list[CallResult]:
    """Decode Result[]; the count must match what was sent, or nothing is trusted.

    Multicall3's own (canonical) layout is decoded by the fast paths below, which check
    it exactly; anything else by the general loop, where every offset and length is
    bounds-checked. A successful zero word is always `ZERO_RESULT` itself."""
    size = len(data)
    base = _read_word(data, 0)
    n = _read_word(data, base)
    if n != expected:
        raise DecodeError(f"aggregate3 returned {n} results for {expected} calls")
    start = base + _WORD
    if start + n * _WORD > size:
        raise DecodeError(f"aggregate3: {n} result offsets overrun the payload")
    if base == _WORD and n:
        fast = (
            _decode_uniform(data, n)
            if size == start + 5 * _WORD * n
            else _decode_canonical(data, n)
        )
        if fast is not None:
            return fast
    frm = int.from_bytes
    out: list[CallResult] = []
    append = out.append
    for i in range(n):
        head = start + i * _WORD
        elem = start + frm(data[head : head + _WORD], "big")
        if elem + 2 * _WORD > size:
            raise DecodeError(f"aggregate3 result {i}: element overruns the payload")
        success = frm(data[elem : elem + _WORD], "big")
        if success > 1:
            raise DecodeError(f"aggregate3 result {i}: success flag {success}")
        ret = elem + frm(data[elem + _WORD : elem + 2 * _WORD], "big")
        if ret + _WORD > size:
            raise DecodeError(f"aggregate3 result {i}: return data overruns the payload")
        end = ret + _WORD + frm(data[ret : ret + _WORD], "big")
        if end > size:
            raise DecodeError(f"aggregate3 result {i}: return data overruns the payload")
        append(_result(success == 1, data[ret + _WORD : end]))
    return out


def _result(success: bool, data: bytes) -> CallResult:
    if success and data == ZERO_WORD:
        return ZERO_RESULT
    return CallResult(success, data)


_OK_32 = _word(1) + _word(2 * _WORD) + _word(_WORD)  # success, data offset, 32 bytes
_OK_HEAD = _word(1) + _word(2 * _WORD)  # success, data offset
_FAIL_HEAD = _word(0) + _word(2 * _WORD)


@lru_cache(maxsize=32)
def _uniform_heads(n: int) -> bytes:
    return b"".join((n * _WORD + i * 4 * _WORD).to_bytes(_WORD, "big") for i in range(n))


def _decode_uniform(data: bytes, n: int) -> list[CallResult] | None:
    """The common case, checked exactly: every call succeeded with one 32-byte word, laid
    out canonically. The words are sliced out, then the offsets compared as one block
    and the elements as one (`_OK_32` between the words rebuilds them exactly), so no
    Python code runs per element but a slice. Anything else returns None."""
    start = 2 * _WORD
    first = start + n * _WORD
    if data[start:first] != _uniform_heads(n):
        return None
    values = [data[e : e + _WORD] for e in range(first + 3 * _WORD, len(data), 4 * _WORD)]
    if data[first:] != _OK_32 + _OK_32.join(values):
        return None
    zero, new, cls = ZERO_RESULT, _tuple_new, CallResult
    return [zero if v == ZERO_WORD else new(cls, (True, v)) for v in values]


def _decode_canonical(data: bytes, n: int) -> list[CallResult] | None:
    """Multicall3's layout with returns of any size: each element right after the last,
    its header one of two constants, the offsets compared as one block at the end.
    Anything else (a layout it did not produce) returns None for the general loop."""
    start = 2 * _WORD
    e = start + n * _WORD
    size = len(data)
    frm, new, cls = int.from_bytes, _tuple_new, CallResult
    zero, ok32, ok_head, fail_head = ZERO_RESULT, _OK_32, _OK_HEAD, _FAIL_HEAD
    out: list[CallResult] = []
    append = out.append
    offsets: list[bytes] = []
    mark = offsets.append
    for _ in range(n):
        head = data[e : e + 3 * _WORD]
        mark((e - start).to_bytes(_WORD, "big"))
        if head == ok32:  # one word back: the usual case
            value = data[e + 3 * _WORD : e + 4 * _WORD]
            append(zero if value == ZERO_WORD else new(cls, (True, value)))
            e += 4 * _WORD
            continue
        ok = head[: 2 * _WORD] == ok_head
        if not ok and head[: 2 * _WORD] != fail_head:
            return None
        k = frm(head[2 * _WORD :], "big")
        end = e + 3 * _WORD + k
        if end > size:
            return None
        append(new(cls, (ok, data[e + 3 * _WORD : end])))
        e = end + (-k) % _WORD
    if e != size or data[start : start + n * _WORD] != b"".join(offsets):
        return None
    return out


def decode_uint(result: CallResult, what: str) -> int:
    """A single uint256 return; empty data (an EOA, no code) is an error, never 0."""
    if not result.success:
        raise DecodeError(f"{what}: call reverted")
    if len(result.data) != _WORD:
        raise DecodeError(f"{what}: expected 32 bytes of return data, got {len(result.data)}")
    return int.from_bytes(result.data, "big")


def decode_decimals(result: CallResult) -> int:
    value = decode_uint(result, "decimals()")
    if value > 77:
        raise DecodeError(f"decimals() returned {value}, above 77")
    return value


def decode_address(result: CallResult, what: str) -> str:
    """A single address return (e.g. ERC-4626 asset()); dirty high bytes are an error."""
    word = decode_uint(result, what)
    if word >> 160:
        raise DecodeError(f"{what}: not an address (high bytes set)")
    return checksum("0x" + word.to_bytes(20, "big").hex())


def decode_text(result: CallResult, what: str) -> str:
    """name()/symbol(): an ABI string, or a bytes32 (MKR, SAI) with its zero padding
    stripped. Anything else, or bytes that are not UTF-8, is an error."""
    if not result.success:
        raise DecodeError(f"{what}: call reverted")
    data = result.data
    if len(data) == _WORD:
        raw = data.rstrip(b"\x00")
    else:
        if _read_word(data, 0) != _WORD:
            raise DecodeError(f"{what}: neither bytes32 nor an ABI string")
        length = _read_word(data, _WORD)
        padded = length + (-length) % _WORD
        if len(data) != 2 * _WORD + padded or any(data[2 * _WORD + length :]):
            raise DecodeError(f"{what}: malformed ABI string ({len(data)} bytes)")
        raw = data[2 * _WORD : 2 * _WORD + length]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{what}: not UTF-8") from exc


def _signed(word: int) -> int:
    return word - (1 << 256) if word >> 255 else word


@dataclass(frozen=True, slots=True)
class RoundData:
    round_id: int
    answer: int
    started_at: int
    updated_at: int
    answered_in_round: int


def decode_round_data(result: CallResult) -> RoundData:
    """AggregatorV3 latestRoundData(): (uint80, int256, uint256, uint256, uint80)."""
    if not result.success:
        raise DecodeError("latestRoundData(): call reverted")
    if len(result.data) != 5 * _WORD:
        raise DecodeError(f"latestRoundData(): expected 160 bytes, got {len(result.data)}")
    w = [int.from_bytes(result.data[i : i + _WORD], "big") for i in range(0, 5 * _WORD, _WORD)]
    if w[0] >> 80 or w[4] >> 80:
        raise DecodeError("latestRoundData(): round id wider than uint80")
    return RoundData(w[0], _signed(w[1]), w[2], w[3], w[4])


@lru_cache(maxsize=4096)
def checksum(address: str) -> str:
    """EIP-55 form; memoised (a keccak each): every batch decodes the same few token
    and vault addresses."""
    return str(to_checksum_address(address))
