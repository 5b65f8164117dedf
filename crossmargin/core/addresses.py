"""EVM addresses in config: `0x` + 20 bytes, EIP-55 checked where mixed case, emitted
checksummed (shared by config.py and protocols.py)."""

from __future__ import annotations

from typing import Annotated

from cchecksum import to_checksum_address
from eth_utils.address import is_hex_address
from pydantic import AfterValidator


def checksummed(value: str) -> str:
    """Reject bad mixed case (a typo guard EIP-55 gives for free); emit checksummed.
    The `0x` prefix is required (eth-utils would take bare hex or `0X` too)."""
    if not value.startswith("0x") or not is_hex_address(value):
        raise ValueError(f"not a 20-byte hex address: {value!r}")
    out = to_checksum_address(value)
    body = value[2:]
    # mixed case must be the checksum itself (eth-utils' is_checksum_address, without
    # hashing the address a second time: a scan checks every input account)
    if body not in (body.lower(), body.upper()) and value != out:
        raise ValueError(f"bad EIP-55 checksum: {value!r}")
    return out


Address = Annotated[str, AfterValidator(checksummed)]
