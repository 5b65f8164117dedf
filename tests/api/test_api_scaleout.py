"""Several API processes (`crossmargin serve`) against one snapshot store: every
account's chain stays linear, results computed by one process are served by the
other from the store, and the whole trail verifies."""

from __future__ import annotations

import asyncio
import secrets
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
from api_helpers import api_process, linear_chain, logged, wait_up
from eth_utils.address import to_checksum_address

from api.store import Store
from crossmargin.cli import main as cli


def test_two_processes_one_store(devnet: Any, database: str, tmp_path: Path) -> None:
    accounts = [to_checksum_address("0x" + secrets.token_hex(20)) for _ in range(3)]
    accounts.append(devnet.demo_accounts["bob"])

    async def drive(a: str, b: str) -> list[tuple[str, str, str]]:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(wait_up(session, a), wait_up(session, b))

            async def get(base: str, path: str) -> tuple[str, str, str]:
                async with session.get(base + path) as resp:
                    assert resp.status == 200, await resp.text()
                    await resp.read()
                    return path, resp.headers["Snapshot-Id"], resp.headers["X-Cache"]

            # the same computations asked of both processes at once, twice over (16
            # requests each: within the devnet config's anonymous burst of 20)
            both = [
                get(base, f"/v1/accounts/{acc}/{what}")
                for acc in accounts
                for what in ("margin", "stress")
                for base in (a, b, a, b)
            ]
            out = list(await asyncio.gather(*both))
            # computed by one process only, then asked of the other: served from the store
            only_a = await get(a, f"/v1/accounts/{accounts[0]}/margin?target_chain=base")
            from_b = await get(b, f"/v1/accounts/{accounts[0]}/margin?target_chain=base")
            assert from_b[2] == "store"
            assert from_b[1] == only_a[1]
            return out

    with ExitStack() as stack:
        a = stack.enter_context(api_process(devnet.config_path, database, tmp_path / "a.log")).url
        b = stack.enter_context(api_process(devnet.config_path, database, tmp_path / "b.log")).url
        try:
            served = asyncio.run(drive(a, b))
        except BaseException:
            stack.close()
            print((tmp_path / "a.log").read_text(), (tmp_path / "b.log").read_text())
            raise
    assert {source for _, _, source in served} <= {"miss", "hit", "coalesced", "store"}

    store = Store.open(database)
    try:
        # one transparency log, no gap, no fork: every snapshot exactly once, in order
        ids = logged(store)
        chains = {a: linear_chain(store, a) for a in accounts}
        assert set(ids) == {sid for chain in chains.values() for sid in chain}
        for account, chain in chains.items():
            assert chain
            stored = set(chain)
            assert {sid for path, sid, _ in served if account in path} <= stored
    finally:
        store.close()
    assert cli(["audit", "verify", "--all", "--database", database]) == 0
