"""Verified reads (METHOD.md §13) against plain reads of the same balances, one run, and
where the verified time goes.

    .venv/bin/python bench/verified.py [--accounts 1000] [--tokens 26] [--repeat 3]

One process starts its own devnet and uses one chain (ethereum): it deploys `--tokens`
DevTokens (OpenZeppelin ERC20) and gives `--accounts` accounts a balance in each and in
the native coin (anvil_setStorageAt on `_balances`, anvil_setBalance), then mines one
block, so its header commits to that state. Then, interleaved, best of `--repeat`:

  (a) plain     `read_chain_many` of every account x (tokens + native) at the pinned
                block: the multicall reads the service makes today;
  (b) verified  the same call on the same chain in verified mode: plus the header
                (hashed to the pin), eth_getProof of every account (native) and of every
                token with its holders' balance slots (JSON-RPC batches), the slots'
                layout discovered (eth_createAccessList, a fresh adapter each run: no
                cache), and every position judged against the proofs;
  (c) node      the node's floor: every JSON-RPC batch (b)'s prover sent (recorded in
                (b): discovery, header, proofs), sent again by a bare aiohttp client in
                the same order, its replies only JSON-decoded: no checks, no hashing,
                nothing kept; the faster of 2 and the chain's `max_concurrency` (8)
                requests at a time (anvil answers 2 at a time best on 2 cores: more
                in flight slow it down).

`our overhead beyond the node's proofs` is (b - c) / a: what verified would cost, in
plain reads, if the node answered its proof requests instantly (it includes (b)'s own
plain read; judging that overlaps the node's answers costs nothing here, as in (b)).
On a shared machine (c) and (b) move with the load; this process's CPU time in (a) and
(b) is printed too, as it does not.

Both read the same numbers (asserted), and every verified position must be proven
(asserted). Proof bytes per snapshot: an account's own proofs (a blob of its own) and
the batch's shared block proof (header and token account proofs, once per chain per
batch) divided over the batch. Last line (the whole cost, node included):
`verified: X.Xx plain, N proven of M`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_utils.crypto import keccak

from adapters import calls as c
from adapters.evm import EvmAdapter
from adapters.rpc import Request
from crossmargin.core.canonical import canonical
from crossmargin.core.config import Config, RepresentationConfig
from crossmargin.pipeline.read import ChainState, read_chain_many
from crossmargin.pipeline.state_codec import encode
from devnet import Devnet
from devnet.evm import DEPLOYER, artifact, deploy_data
from devnet.rpc import Rpc, wait_receipts

CHAIN = "ethereum"
JSON = {"Content-Type": "application/json"}


def accounts_of(n: int) -> list[str]:
    return [
        c.checksum("0x" + keccak(b"bench-verified" + i.to_bytes(4, "big"))[12:].hex())
        for i in range(n)
    ]


async def seed(net: Devnet, accounts: list[str], n_tokens: int) -> list[str]:
    """Deploy the tokens, write every balance, mine one block; the token addresses."""
    chain = net.config.chain(CHAIN)
    async with aiohttp.ClientSession() as session:
        rpc = Rpc(session, chain.rpc_urls[0], chain.chain_id)
        nonce = int(await rpc.call("eth_getTransactionCount", [DEPLOYER, "pending"]), 16)
        art = artifact("DevToken")
        txs = [
            {
                "from": DEPLOYER,
                "data": deploy_data(art, ["string", "string", "uint8"], [f"V{i}", f"V{i}", 18]),
                "gas": hex(3_000_000),
                "nonce": hex(nonce + i),
            }
            for i in range(n_tokens)
        ]
        receipts = await wait_receipts(
            rpc, await rpc.batch([("eth_sendTransaction", [tx]) for tx in txs])
        )
        tokens = [c.checksum(r["contractAddress"]) for r in receipts]
        rng = random.Random(7)
        writes: list[tuple[str, list[Any]]] = []
        for a in accounts:
            writes.append(("anvil_setBalance", [a, hex(rng.randrange(0, 10**24))]))
            slot = "0x" + keccak(bytes(12) + bytes.fromhex(a[2:]) + bytes(32)).hex()
            for t in tokens:
                q = 0 if rng.random() < 0.1 else rng.randrange(1, 10**27)
                writes.append(("anvil_setStorageAt", [t, slot, "0x" + f"{q:064x}"]))
        for i in range(0, len(writes), 5000):
            await rpc.batch(writes[i : i + 5000])
        await rpc.call("evm_mine", [])
    return tokens


def bench_config(config: Config, tokens: list[str], mode: str) -> Config:
    reps = [
        RepresentationConfig(chain=CHAIN, asset="ETH", symbol="ETH", address="native", decimals=18)
    ]
    reps += [
        RepresentationConfig(chain=CHAIN, asset="ETH", symbol=f"V{i}", address=t, decimals=18)
        for i, t in enumerate(tokens)
    ]
    chains = [
        # anvil answers a batch of eth_getProof one at a time, each rebuilding its tries:
        # a long timeout, so no batch is split for slowness alone
        ch.model_copy(
            update={"verification": mode, "max_calls_per_batch": 2000, "timeout_s": 600.0}
        )
        for ch in config.chains
    ]
    return config.model_copy(update={"representations": reps, "chains": chains})


@dataclass
class Run:
    states: list[ChainState]
    secs: float
    cpu_s: float  # this process's CPU time in the read (the node's is not in it)
    requests: int
    fetch_s: float  # in the prover, not judging: waiting for the node, decoding JSON
    judge_s: float  # in the prover, judging (partly while the node answers)
    sent: list[Sequence[Request]]  # the prover's JSON-RPC batches, in the order sent


async def read(config: Config, accounts: list[str]) -> Run:
    """One whole read of the chain (fresh adapter: nothing cached)."""
    async with aiohttp.ClientSession() as session:
        adapter = EvmAdapter(config.chain(CHAIN), session)
        p = adapter.prover
        p.sent = []
        t0, c0 = time.perf_counter(), time.process_time()
        states = await read_chain_many(config, adapter, accounts)
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        return Run(states, secs, cpu, adapter.rpc.requests, p.fetch_s, p.judge_s, p.sent)


async def node_floor(config: Config, sent: list[Sequence[Request]], concurrency: int) -> float:
    """Seconds for the node to answer `sent` to a bare client: the same batches in the
    same order, `concurrency` at a time, each reply JSON-decoded and dropped."""
    chain = config.chain(CHAIN)
    slots = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=chain.timeout_s)
    bodies = [
        json.dumps(
            [
                {"jsonrpc": "2.0", "id": i, "method": m, "params": params}
                for i, (m, params) in enumerate(batch)
            ]
        ).encode()
        for batch in sent
    ]
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one(body: bytes, n: int) -> None:
            async with slots, session.post(chain.rpc_urls[0], data=body, headers=JSON) as resp:
                reply = json.loads(await resp.read())
            assert isinstance(reply, list)
            assert len(reply) == n, "the node refused a batch"

        t0 = time.perf_counter()
        await asyncio.gather(*(one(b, len(batch)) for b, batch in zip(bodies, sent, strict=True)))
        return time.perf_counter() - t0


def amounts(states: list[ChainState]) -> list[list[int | None]]:
    return [[b.raw_amount for b in s.balances] for s in states]


async def main(args: argparse.Namespace) -> int:
    accounts = accounts_of(args.accounts)
    with tempfile.TemporaryDirectory(prefix="bench-verified-") as tmp:
        async with Devnet.start(state_dir=tmp, keeper=False) as net:
            t0 = time.perf_counter()
            tokens = await seed(net, accounts, args.tokens)
            print(f"seeded {len(accounts)} accounts x {len(tokens) + 1} representations "
                  f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip
            plain_cfg = bench_config(net.config, tokens, "plain")
            proof_cfg = bench_config(net.config, tokens, "proof")
            plain_runs, proof_runs, floors = [], [], []
            for _ in range(args.repeat):
                plain = await read(plain_cfg, accounts)
                proof = await read(proof_cfg, accounts)
                for n in sorted({2, proof_cfg.chain(CHAIN).max_concurrency}):
                    floors.append(await node_floor(proof_cfg, proof.sent, n))
                assert amounts(plain.states) == amounts(proof.states), "plain and verified differ"
                plain_runs.append(plain)
                proof_runs.append(proof)
    best_p = min(plain_runs, key=lambda r: r.secs)
    best_v = min(proof_runs, key=lambda r: r.secs)
    v_states = best_v.states
    verdicts = [v for s in v_states if s.holder_proof for v in s.holder_proof.verdicts]
    proven, total = sum(v.ok for v in verdicts), len(verdicts)
    assert proven == total == len(accounts) * (len(tokens) + 1), (proven, total)
    p_secs, p_reqs, v_secs, v_reqs = best_p.secs, best_p.requests, best_v.secs, best_v.requests
    own = [len(canonical(encode(s.holder_proof))) for s in v_states]
    shared = len(canonical(encode(v_states[0].block_proof)))
    per_doc = sum(own) / len(own) + shared / len(v_states)
    n = total
    print(f"{'read':<12}{'positions':>10}{'seconds':>10}{'positions/s':>13}{'HTTP requests':>15}")
    print(f"{'plain':<12}{n:>10}{p_secs:>10.3f}{n / p_secs:>13,.0f}{p_reqs:>15}")
    print(f"{'verified':<12}{n:>10}{v_secs:>10.3f}{n / v_secs:>13,.0f}{v_reqs:>15}")
    print(
        f"proof bytes per snapshot: {per_doc / 1024:.1f} KiB ({sum(own) / len(own) / 1024:.1f} "
        f"KiB own proofs + the batch's {shared / 1024:.1f} KiB block proof / {len(v_states)})"
    )
    node = min(floors)
    calls = [m for batch in best_v.sent for m, _ in batch]
    n_proofs = calls.count("eth_getProof")
    print(
        f"node's floor: {node:.2f} s for the prover's {len(calls)} requests ({n_proofs} "
        f"eth_getProof) in {len(best_v.sent)} batches, to a bare client: "
        f"{node / max(n_proofs, 1) * 1e3:.1f} ms an eth_getProof (anvil rebuilds its tries "
        f"for every call)"
    )
    print(
        f"verified time: {best_v.judge_s:.2f} s judging (partly while the node answers), "
        f"{best_v.fetch_s:.2f} s waiting for the node and decoding its JSON"
    )
    print(
        f"this process's CPU: plain {best_p.cpu_s:.2f} s, verified {best_v.cpu_s:.2f} s "
        f"({best_v.cpu_s / best_p.cpu_s:.1f}x)"
    )
    print(f"our overhead beyond the node's proofs: {(v_secs - node) / p_secs:.1f}x plain")
    print(f"verified: {v_secs / p_secs:.1f}x plain, {proven} proven of {total}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=26)
    parser.add_argument("--repeat", type=int, default=3)
    sys.exit(asyncio.run(main(parser.parse_args())))
