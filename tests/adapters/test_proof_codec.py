"""adapters/proof.py without a chain: the proof walker against `trie`'s HexaryTrie on
random secure tries (the library builds the trie and its proofs; ours must read every
key back, absent keys as absent, and refuse any proof with a changed or missing node),
header RLP against a known mainnet-shaped block, and the balance-slot layouts."""

from __future__ import annotations

import rlp
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st
from trie.hexary import HexaryTrie

from adapters.proof import (
    EMPTY_ROOT,
    Asked,
    Layout,
    ProofError,
    erc7201,
    header_rlp,
    judge,
    layout_of,
    matches,
    node_db,
    prove_slot,
    state_root,
)

WORDS = st.integers(min_value=1, max_value=(1 << 256) - 1)
SLOTS = st.dictionaries(st.integers(min_value=0, max_value=(1 << 256) - 1), WORDS, max_size=40)


def _storage_trie(slots: dict[int, int]) -> HexaryTrie:
    """A contract's storage as the EVM keeps it: keccak(slot) -> rlp(value)."""
    t = HexaryTrie({})
    for slot, value in slots.items():
        t.set(keccak(slot.to_bytes(32, "big")), rlp.encode(value))
    return t


def _proof_nodes(t: HexaryTrie, slot: int) -> list[bytes]:
    """The proof as a node serves it: each node's RLP (embedded nodes stay inside)."""
    proof = t.get_proof(keccak(slot.to_bytes(32, "big")))
    return [rlp.encode(node) for node in proof if len(rlp.encode(node)) >= 32 or node is proof[0]]


@settings(max_examples=60, deadline=None)
@given(SLOTS, st.integers(min_value=0, max_value=(1 << 256) - 1))
def test_walker_reads_what_the_library_built(slots: dict[int, int], absent: int) -> None:
    t = _storage_trie(slots)
    root = t.root_hash if slots else EMPTY_ROOT
    for slot, value in slots.items():
        assert prove_slot(root, slot, node_db(_proof_nodes(t, slot))) == value
    if absent not in slots:  # a proof of absence: the path ends before the key
        assert prove_slot(root, absent, node_db(_proof_nodes(t, absent) if slots else [])) == 0


@settings(max_examples=40, deadline=None)
@given(SLOTS.filter(lambda d: len(d) >= 2), st.data())
def test_a_changed_or_missing_node_is_refused(slots: dict[int, int], data: st.DataObject) -> None:
    t = _storage_trie(slots)
    slot = data.draw(st.sampled_from(sorted(slots)))
    nodes = _proof_nodes(t, slot)
    i = data.draw(st.integers(min_value=0, max_value=len(nodes) - 1))
    missing = nodes[:i] + nodes[i + 1 :]
    node = bytearray(nodes[i])
    j = data.draw(st.integers(min_value=0, max_value=len(node) - 1))
    node[j] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
    changed = [*missing, bytes(node)]
    for bad in (missing, changed):
        try:
            got = prove_slot(t.root_hash, slot, node_db(bad))
        except ProofError:
            continue
        raise AssertionError(f"a proof with node {i} changed or missing gave {got}")


def test_header_rlp_hashes_to_the_block_and_fork_fields_go_in_order() -> None:
    block = {
        "parentHash": "0x" + "11" * 32,
        "sha3Uncles": "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347",
        "miner": "0x" + "22" * 20,
        "stateRoot": "0x" + "33" * 32,
        "transactionsRoot": "0x" + "44" * 32,
        "receiptsRoot": "0x" + "55" * 32,
        "logsBloom": "0x" + "00" * 256,
        "difficulty": "0x0",
        "number": "0x1b4",
        "gasLimit": "0x1c9c380",
        "gasUsed": "0x0",
        "timestamp": "0x6553f100",
        "extraData": "0x",
        "mixHash": "0x" + "66" * 32,
        "nonce": "0x0000000000000000",
        "baseFeePerGas": "0x7",
        "withdrawalsRoot": "0x" + "77" * 32,
        "blobGasUsed": "0x0",
        "excessBlobGas": "0x0",
        "parentBeaconBlockRoot": "0x" + "88" * 32,
        "requestsHash": "0x" + "99" * 32,
    }
    encoded = header_rlp(block)
    items = rlp.decode(encoded)
    assert len(items) == 21
    assert items[8] == bytes.fromhex("01b4")  # integers minimal, big-endian
    assert items[7] == b""  # 0 is the empty string
    pin = "0x" + keccak(encoded).hex()
    assert state_root(encoded, pin) == bytes.fromhex("33" * 32)
    try:
        state_root(encoded, "0x" + "00" * 32)
        raise AssertionError("a header accepted for another hash")
    except ProofError:
        pass
    london = {k: v for k, v in block.items() if k not in ("withdrawalsRoot", "blobGasUsed",
                                                          "excessBlobGas", "parentBeaconBlockRoot",
                                                          "requestsHash")}  # fmt: skip
    assert len(rlp.decode(header_rlp(london))) == 16
    gap = {**london, "blobGasUsed": "0x0"}  # a later fork's field without the earlier one
    try:
        header_rlp(gap)
        raise AssertionError("a header with a gap in its fork fields was encoded")
    except ProofError:
        pass


def test_a_header_that_does_not_hash_fails_every_position() -> None:
    verdicts = judge(b"\xc0", "0x" + "00" * 32, {}, [Asked("0x" + "00" * 20, None, None, 1)])
    assert [(v.ok, v.proven) for v in verdicts] == [(False, None)]


HOLDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def test_layouts_place_balances_where_compilers_do() -> None:
    key = bytes.fromhex(HOLDER[2:]).rjust(32, b"\0")
    zero = (0).to_bytes(32, "big")
    assert Layout("solidity", 0).slot(HOLDER) == int.from_bytes(keccak(key + zero), "big")
    assert Layout("vyper", 0).slot(HOLDER) == int.from_bytes(keccak(zero + key), "big")
    # OpenZeppelin 5's documented ERC20StorageLocation
    assert erc7201("openzeppelin.storage.ERC20") == int(
        "52c63247e1f47db19d5ce0460030c497f067ca4cebf71ba98eeadabe20bace00", 16
    )
    assert layout_of("erc7201:openzeppelin.storage.ERC20") == Layout(
        "solidity", erc7201("openzeppelin.storage.ERC20")
    )
    assert layout_of("vyper:3") == Layout("vyper", 3)
    touched = [Layout("solidity", 5).slot(HOLDER), 12345]
    assert matches(HOLDER, touched) == [Layout("solidity", 5)]
    assert matches(HOLDER, [7]) == []
