"""Compiled artifacts and the few ABI helpers the devnet needs (pure functions)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eth_abi.abi import decode, encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from devnet.errors import DevnetError

# Multicall3's canonical address (same on every EVM chain that has it).
MULTICALL3 = "0xcA11bde05977b3631167028862bE2a173976CA11"
# anvil's account 0 for the default mnemonic "test test ... junk": deployer and keeper.
DEPLOYER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
DEV_MNEMONIC = "test test test test test test test test test test test junk"


def repo_root() -> Path:
    """The source checkout this package runs from (artifacts and node_modules live there)."""
    return Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Artifact:
    name: str
    bytecode: str
    deployed_bytecode: str
    # Library name -> byte offsets in `bytecode` where its address goes (Aave's Pool).
    links: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def linked(self, libraries: dict[str, str]) -> Artifact:
        """The creation code with every library placeholder replaced by its address."""
        missing = {lib for lib, _ in self.links} - set(libraries)
        if missing:
            raise DevnetError(f"{self.name}: no address for libraries {sorted(missing)}")
        text = list(self.bytecode[2:])
        for lib, offsets in self.links:
            address = libraries[lib][2:].lower()
            for at in offsets:
                if "".join(text[2 * at : 2 * at + 3]) != "__$":
                    raise DevnetError(f"{self.name}: no placeholder for {lib} at byte {at}")
                text[2 * at : 2 * at + 40] = address
        code = "".join(text)
        if "__" in code:
            raise DevnetError(f"{self.name}: a library placeholder has no link reference")
        return Artifact(self.name, "0x" + code, self.deployed_bytecode)


@cache
def artifact(name: str) -> Artifact:
    path = repo_root() / "contracts" / "artifacts" / f"{name}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DevnetError(f"{path}: cannot read ({exc.strerror}); run make contracts") from exc
    links = tuple(
        (lib, tuple(ref["start"] for ref in refs))
        for libs in data.get("linkReferences", {}).values()
        for lib, refs in libs.items()
    )
    return Artifact(name, data["bytecode"], data["deployedBytecode"], links)


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def calldata(signature: str, *args: Any) -> str:
    """0x-hex calldata for `name(type,...)` with positional args."""
    types = signature[signature.index("(") + 1 : -1]
    body = encode(_split(types), list(args)) if types else b""
    return "0x" + (selector(signature) + body).hex()


def deploy_data(art: Artifact, types: list[str], args: list[Any]) -> str:
    return art.bytecode + encode(types, args).hex()


def decode_result(types: list[str], data: str) -> tuple[Any, ...]:
    return tuple(decode(types, bytes.fromhex(data.removeprefix("0x"))))


def create_address(sender: str, nonce: int) -> str:
    """CREATE address: keccak256(rlp([sender, nonce]))[12:]."""
    payload = _rlp_bytes(bytes.fromhex(sender[2:])) + _rlp_bytes(_minimal(nonce))
    if len(payload) > 55:  # pragma: no cover - a 20-byte sender and an int never get here
        raise ValueError("payload too long for the short-list form")
    return to_checksum_address(keccak(bytes([0xC0 + len(payload)]) + payload)[12:])


def _minimal(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""


def _rlp_bytes(b: bytes) -> bytes:
    if len(b) == 1 and b[0] < 0x80:
        return b
    if len(b) > 55:  # pragma: no cover
        raise ValueError("string too long for the short form")
    return bytes([0x80 + len(b)]) + b


def _split(types: str) -> list[str]:
    """Split a flat type list (no tuples needed here)."""
    if "(" in types:
        raise ValueError(f"tuple types are not supported: {types}")
    return types.split(",")
