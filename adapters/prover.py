"""Verified reads (METHOD.md §13), the I/O half: fetch one chain's header and proofs at
a pin, in JSON-RPC batches, and judge every position with adapters/proof.py.

    prover = Prover(chain, rpc)                       # one per EvmAdapter
    block, per_holder = await prover.prove(pin, reads)  # reads: holder -> [BalanceRead]

Requests, in JSON-RPC batches (at most `BATCH` requests and `BATCH_KEYS` storage keys
per HTTP request): eth_getBlockByHash of the pin; eth_getProof of each token's account
with the storage keys of every holder's balance (`KEYS` keys per request), and of each
holder's account (native coin). The header and token proofs are asked first (every
holder needs them); the holders' account proofs follow, and each batch of holders is
judged as its proofs arrive, while the node is still answering the rest. A token's
balance slot comes from config (`balance_slot`), else from discovery, once per token
for the life of the adapter: eth_createAccessList of balanceOf(holder) names the slots
the call reads, and the candidate layouts (proof.candidates) are tried against them.
The proof then tests the discovered slot: its value must equal what balanceOf said.

Nothing fetched is trusted: what the node says a balance or root is, is ignored; only
the header (hashed to the pin) and the trie nodes (hashed down from its state root)
count. A node that cannot or will not answer leaves positions unverified, never the
chain unreadable: the plain reads stand, valued as §13 says.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adapters import calls as c
from adapters.proof import (
    Account,
    Asked,
    Layout,
    ProofError,
    Verdict,
    header_rlp,
    judge,
    keccak,
    layout_of,
    matches,
)
from adapters.rpc import Endpoint, JsonRpcClient, Request
from crossmargin.core.config import ChainConfig, RepresentationConfig
from crossmargin.core.errors import ChainError, PayloadTooLarge, RequestTimeout

if TYPE_CHECKING:  # evm.py builds a Prover: these two import evm.py themselves
    from adapters.balances import BalanceRead
    from adapters.evm import BlockPin

log = logging.getLogger("crossmargin.adapters.prover")

BATCH = 50  # JSON-RPC requests per HTTP request
# Storage keys per eth_getProof. A node's cost is mostly per call (anvil rebuilds its
# tries for each: ~30 ms for 1 key, ~44 ms for 1,000, measured with 1,000 accounts x 26
# tokens), so one call carries a token's keys for up to 1,000 holders (~70 KB asked,
# ~2.7 MB answered); an HTTP request carries at most BATCH_KEYS keys (~5 MB answered).
KEYS = 1000
BATCH_KEYS = 2000


@dataclass(frozen=True, slots=True)
class TokenProof:
    """A token's account proof at the pin and the layout its balance slots follow."""

    token: str
    layout: str | None
    nodes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BlockProof:
    """What every holder of a batch shares on one chain: the pinned header (RLP, hex)
    and the tokens' account proofs."""

    header: str
    tokens: tuple[TokenProof, ...]


@dataclass(frozen=True, slots=True)
class HolderProof:
    """One holder's proofs on one chain (its account proof, the storage proofs of its
    balance slots) and the verdict on each of its positions, in balance order."""

    holder: str
    nodes: tuple[str, ...]
    verdicts: tuple[Verdict, ...]


COMPUTED = "a computed balance (vault shares, protocol position) is not a stored value"


def provable(rep: RepresentationConfig) -> bool:
    """Whether a token balance is a stored value a storage proof can show: not a vault's
    convertToAssets (ERC-4626) nor a protocol position (an Aave balance is its scaled
    balance times the reserve's index)."""
    return rep.standard == "erc20" and rep.protocol is None


def asked(
    holder: str, balances: Sequence[BalanceRead], layouts: Mapping[str, str | None]
) -> list[Asked]:
    """What is to be proven for `holder`'s balances, given the tokens' layouts (token ->
    layout text, from the block proof)."""
    out: list[Asked] = []
    for b in balances:
        rep = b.rep
        if rep.standard == "native":
            out.append(Asked(holder, None, None, b.raw_amount))
        elif not provable(rep):
            out.append(Asked(holder, rep.address, None, b.raw_amount, COMPUTED))
        else:
            text = layouts.get(rep.address)
            slot = None if text is None else layout_of(text).slot(holder)
            out.append(Asked(holder, rep.address, slot, b.raw_amount))
    return out


class Judge:
    """Verdicts against one chain's block proof: its header and token nodes decoded
    once, accounts proven once, for every holder of a batch (live and offline)."""

    def __init__(self, pin_hash: str, block: BlockProof) -> None:
        self.pin_hash = pin_hash
        self.block = block
        self.header = bytes.fromhex(block.header)
        self._hashes: dict[str, bytes] = {}  # node (hex) -> its keccak, once per batch
        self._nodes: dict[bytes, bytes] = {}  # keccak -> node
        self.shared = self._db(n for t in block.tokens for n in t.nodes)
        self.accounts: dict[str, Account | ProofError] = {}
        self.memo: dict[bytes, Any] = {}  # decoded nodes by hash (proof._ProofTrie)
        self._tokens = {t.token for t in block.tokens}
        self._layouts = {t.token: t.layout for t in block.tokens}

    def _db(self, nodes: Iterable[str]) -> dict[bytes, bytes]:
        """These nodes by hash; each distinct node is decoded from hex and hashed once
        per batch (holders' proofs share their upper nodes)."""
        out = {}
        for n in nodes:
            h = self._hashes.get(n)
            if h is None:
                raw = bytes.fromhex(n)
                h = self._hashes[n] = keccak(raw)
                self._nodes[h] = raw
            out[h] = self._nodes[h]
        return out

    def verdicts(self, proof: HolderProof, balances: Sequence[BalanceRead]) -> list[Verdict]:
        """The holder's verdicts from its own nodes and the block's, nothing else."""
        db = {**self.shared, **self._db(proof.nodes)}  # a copy: faster to look up than a ChainMap
        # token accounts come from the shared nodes only, so they are cached for all
        own = {a: v for a, v in self.accounts.items() if a in self._tokens}
        asks = asked(proof.holder, balances, self._layouts)
        out = judge(self.header, self.pin_hash, db, asks, own, self.memo)
        self.accounts.update({a: v for a, v in own.items() if a in self._tokens})
        return out


def _hexes(value: Any) -> list[str]:
    """Proof nodes as bare lower-case hex; anything malformed is dropped (and so fails)."""
    if not isinstance(value, list):
        return []
    out = []
    for v in value:
        if isinstance(v, str) and v.startswith("0x") and len(v) % 2 == 0:
            body = v[2:].lower()
            try:
                bytes.fromhex(body)
            except ValueError:
                continue
            out.append(body)
    return out


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


class Prover:
    """Header and proofs of one chain at a pin; layouts found once per token."""

    def __init__(self, chain: ChainConfig, rpc: JsonRpcClient) -> None:
        self.chain = chain
        self.rpc = rpc
        self._layouts: dict[str, str | None] = {}
        # benchmarks (bench/verified.py): seconds in prove() judging and not judging
        # (waiting for the node, decoding its JSON), and, if a list, every batch sent
        self.fetch_s = 0.0
        self.judge_s = 0.0
        self.sent: list[Sequence[Request]] | None = None

    async def _batch(self, requests: Sequence[Request]) -> list[Any]:
        """Every request answered (result per request, None where the node refused)."""
        parts = await asyncio.gather(*(self._chunk(ch) for ch in _chunks(requests)))
        return [r for part in parts for r in part]

    async def _chunk(self, chunk: list[Request]) -> list[Any]:
        """One JSON-RPC batch, retried and failed over by the client; a batch the node
        finds too large or too slow is split in two (as multicalls are, adapters/evm.py)."""

        async def op(ep: Endpoint) -> list[Any]:
            if self.sent is not None:
                self.sent.append(chunk)
            return await self.rpc.send_batch(ep, chunk)

        try:
            return await self.rpc.attempt(op, n_calls=len(chunk))
        except (PayloadTooLarge, RequestTimeout) as exc:
            if len(chunk) > 1:
                mid = len(chunk) // 2
                halves = await asyncio.gather(self._chunk(chunk[:mid]), self._chunk(chunk[mid:]))
                return [*halves[0], *halves[1]]
            log.info("%s proofs unavailable: %s", self.chain.name, exc)
        except ChainError as exc:
            log.info("%s proofs unavailable: %s", self.chain.name, exc)
        return [None] * len(chunk)

    async def layouts(
        self, reads: Mapping[str, Sequence[BalanceRead]], pin: BlockPin
    ) -> dict[str, str | None]:
        """Each ERC-20's balance layout: config's, cached, or discovered now for the
        tokens not seen before (`_discover`)."""
        rows = list(reads.values())
        tokens = {b.rep.address: b.rep for b in (rows[0] if rows else []) if provable(b.rep)}
        for token, rep in tokens.items():
            if rep.balance_slot is not None:
                self._layouts[token] = layout_of(rep.balance_slot).text()
        unknown = [t for t in tokens if t not in self._layouts]
        found: dict[str, str | None] = {}
        if unknown:
            found = await self._discover(unknown, reads, pin)
        return {t: self._layouts.get(t, found.get(t)) for t in tokens}

    async def _discover(
        self, tokens: list[str], reads: Mapping[str, Sequence[BalanceRead]], pin: BlockPin
    ) -> dict[str, str | None]:
        """eth_createAccessList of balanceOf(holder) names the slots the call reads; of the
        candidate layouts whose slot for the holder is among them, the first whose value
        (eth_getStorageAt) equals the balance read is taken, and cached for the token if
        that balance is not 0 (the holder is one with a non-zero balance where the batch
        has one). For a debt token with no such candidate, the first touched one is used
        for this batch: its proof can only raise the debt counted (§13), so a node that
        lies about a debt balance cannot also hide its slot."""
        at = {"blockHash": pin.hash}
        pick: dict[str, tuple[str, int, bool]] = {}  # token -> holder, balance, debt
        for token in tokens:
            seen = [
                (h, b.raw_amount, b.rep.kind == "debt")
                for h, row in reads.items()
                for b in row
                if b.rep.address == token and b.raw_amount is not None
            ]
            if seen:
                pick[token] = max(seen, key=lambda x: x[1] > 0)
        asked = list(pick)
        replies = await self._batch(
            [
                ("eth_createAccessList", [{"to": t, "data": _balance_of(pick[t][0])}, at])
                for t in asked
            ]
        )
        tries = [
            (t, layout)
            for t, reply in zip(asked, replies, strict=True)
            for layout in matches(pick[t][0], _touched(reply, t))
        ]
        values = await self._batch(
            [("eth_getStorageAt", [t, hex(lay.slot(pick[t][0])), at]) for t, lay in tries]
        )
        out: dict[str, str | None] = {}
        for (t, layout), value in zip(tries, values, strict=True):
            if t not in out and _word(value) == pick[t][1]:
                out[t] = layout.text()
                if pick[t][1]:
                    self._layouts[t] = layout.text()
        for t, layout in tries:
            if t not in out and pick[t][2]:
                out[t] = layout.text()
        return out

    async def prove(
        self, pin: BlockPin, reads: Mapping[str, Sequence[BalanceRead]]
    ) -> tuple[BlockProof, dict[str, HolderProof]]:
        """The chain's block proof and each holder's proof with its verdicts. All requests
        go out at once, the header and token proofs first; each batch of holders is
        judged as soon as its account proofs are in (judging overlaps the node's work)."""
        t0 = time.perf_counter()
        holders = list(reads)
        layouts = await self.layouts(reads, pin)
        native = any(b.rep.standard == "native" for b in next(iter(reads.values()), []))
        shared_req, spans = _requests(pin, holders, layouts)
        groups = [holders[i : i + BATCH] for i in range(0, len(holders), BATCH)] if native else []
        at = {"blockHash": pin.hash}

        async def accounts(group: list[str]) -> tuple[list[str], list[Any]]:
            return group, await self._chunk([("eth_getProof", [h, [], at]) for h in group])

        # created in the order the node should see them (the client's slots are FIFO)
        shared_tasks = [asyncio.ensure_future(self._chunk(ch)) for ch in _chunks(shared_req)]
        account_tasks = [asyncio.ensure_future(accounts(g)) for g in groups]
        try:
            return await self._judge_as_answered(
                pin, reads, layouts, spans, shared_tasks, account_tasks, t0
            )
        finally:
            for task in (*shared_tasks, *account_tasks):
                task.cancel()  # a no-op once done; stops the rest if prove() is cancelled

    async def _judge_as_answered(
        self,
        pin: BlockPin,
        reads: Mapping[str, Sequence[BalanceRead]],
        layouts: Mapping[str, str | None],
        spans: Sequence[tuple[str, int, int]],
        shared_tasks: Sequence[asyncio.Future[list[Any]]],
        account_tasks: Sequence[asyncio.Future[tuple[list[str], list[Any]]]],
        t0: float,
    ) -> tuple[BlockProof, dict[str, HolderProof]]:
        """prove()'s second half: the block proof once the header and token proofs are
        in, then every holder's verdicts, a batch of holders as its account proofs come."""
        holders = list(reads)
        judging = 0.0
        replies = [r for part in await asyncio.gather(*shared_tasks) for r in part]
        t1 = time.perf_counter()
        storage: dict[str, list[str]] = {h: [] for h in holders}  # token order, as asked
        token_nodes: dict[str, list[str]] = {}
        for token, i, lo in spans:
            token_nodes.setdefault(token, _hexes(_field(replies[i], "accountProof")))
            entries = _field(replies[i], "storageProof")
            entries = entries if isinstance(entries, list) else []
            for h, entry in zip(holders[lo : lo + KEYS], entries, strict=False):
                storage[h] += _hexes(_field(entry, "proof"))
        block = BlockProof(
            _header(replies[0]),
            tuple(TokenProof(t, layouts[t], _unique(token_nodes.get(t, []))) for t in layouts),
        )
        judged = Judge(pin.hash, block)
        shared = {n for t in block.tokens for n in t.nodes}  # stored once, in the block
        proofs: dict[str, HolderProof] = {}

        def judge(group: Sequence[str], account_replies: Sequence[Any]) -> None:
            for h, reply in zip(group, account_replies, strict=True):
                own = _hexes(_field(reply, "accountProof")) + storage[h]
                nodes = _unique([n for n in own if n not in shared])
                verdicts = judged.verdicts(HolderProof(h, nodes, ()), reads[h])
                proofs[h] = HolderProof(h, nodes, tuple(verdicts))

        if not account_tasks:  # no native coin read: the storage proofs are all
            judge(holders, [None] * len(holders))
        judging += time.perf_counter() - t1
        for done in asyncio.as_completed(account_tasks):
            group, account_replies = await done
            t2 = time.perf_counter()
            judge(group, account_replies)
            judging += time.perf_counter() - t2
        self.judge_s += judging
        self.fetch_s += time.perf_counter() - t0 - judging
        return block, {h: proofs[h] for h in holders}


def _chunks(requests: Sequence[Request]) -> list[list[Request]]:
    """`requests` in order, cut into HTTP requests of at most BATCH requests and at most
    BATCH_KEYS storage keys (a request with more keys than that goes alone)."""
    out: list[list[Request]] = []
    keys = 0
    for method, params in requests:
        n = len(params[1]) if method == "eth_getProof" else 0
        if not out or len(out[-1]) >= BATCH or (out[-1] and keys + n > BATCH_KEYS):
            out.append([])
            keys = 0
        out[-1].append((method, params))
        keys += n
    return out


def _requests(
    pin: BlockPin, holders: list[str], layouts: Mapping[str, str | None]
) -> tuple[list[Request], list[tuple[str, int, int]]]:
    """The header, then per token with a known layout its account proof with `KEYS`
    holders' slots a request; and per token request (token, its index, its first
    holder). The holders' own account proofs (native coin) are asked apart."""
    at = {"blockHash": pin.hash}
    requests: list[Request] = [("eth_getBlockByHash", [pin.hash, False])]
    spans: list[tuple[str, int, int]] = []
    for token, text in layouts.items():
        if text is None:
            continue  # no slot to prove: its positions are unverified
        layout = layout_of(text)
        for lo in range(0, len(holders), KEYS):
            keys = [f"0x{layout.slot(h):064x}" for h in holders[lo : lo + KEYS]]
            spans.append((token, len(requests), lo))
            requests.append(("eth_getProof", [token, keys, at]))
    return requests, spans


def _field(reply: Any, name: str) -> Any:
    return reply.get(name) if isinstance(reply, dict) else None


def _header(block: Any) -> str:
    """The header's RLP as hex, or "" when the node gave no usable block (then nothing
    can be proven: the empty header hashes to no pin)."""
    if not isinstance(block, dict):
        return ""
    try:
        return header_rlp(block).hex()
    except ValueError:
        return ""


def _balance_of(holder: str) -> str:
    return "0x" + c.balance_of(holder, holder).data.hex()


def _word(value: Any) -> int | None:
    try:
        return int(str(value), 16) if isinstance(value, str) else None
    except ValueError:
        return None


def _touched(reply: Any, token: str) -> list[int]:
    """The storage keys of `token` in an eth_createAccessList answer."""
    entries = _field(reply, "accessList")
    out: list[int] = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or str(entry.get("address", "")).lower() != token.lower():
            continue
        for key in entry.get("storageKeys") or []:
            try:
                out.append(int(str(key), 16))
            except ValueError:
                continue
    return out


__all__ = ["BlockProof", "HolderProof", "Judge", "Layout", "Prover", "TokenProof", "asked"]
