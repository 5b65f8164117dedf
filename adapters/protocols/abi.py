"""Word-level ABI helpers for the protocol codecs: fixed layouts, every field range-checked."""

from __future__ import annotations

from eth_utils.abi import function_signature_to_4byte_selector

from adapters.calls import CallResult, checksum
from crossmargin.core.errors import DecodeError

WORD = 32


def selector(signature: str) -> bytes:
    return function_signature_to_4byte_selector(signature)


def uint_word(value: int) -> bytes:
    return value.to_bytes(WORD, "big")


def words(result: CallResult, n: int, what: str) -> list[int]:
    """Exactly `n` words of return data; a revert or any other length is an error."""
    if not result.success:
        raise DecodeError(f"{what}: call reverted")
    if len(result.data) != n * WORD:
        raise DecodeError(
            f"{what}: expected {n * WORD} bytes of return data, got {len(result.data)}"
        )
    d = result.data
    return [int.from_bytes(d[i : i + WORD], "big") for i in range(0, n * WORD, WORD)]


def bits(value: int, width: int, what: str) -> int:
    """`value` if it fits the Solidity type's `width` bits, else a DecodeError."""
    if value >> width:
        raise DecodeError(f"{what}: wider than {width} bits")
    return value


def as_address(value: int, what: str) -> str:
    return checksum("0x" + bits(value, 160, what).to_bytes(20, "big").hex())
