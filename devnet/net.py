"""Devnet: four local chains in the state configs/devnet.toml describes.

    async with Devnet.start(state_dir=..., seed=..., keeper=True) as net:
        net.config            # crossmargin.core.config.Config with this run's RPC URLs
        net.rpc_url("base")   # http://127.0.0.1:<port>
        net.demo_accounts     # {"alice": "0x...", ...}

Start-up: validate config + scenario, check every configured address against the
deploy order (before anything is spawned), start one anvil per chain in parallel,
set up the chains in parallel (deploy.py), write <state_dir>/crossmargin.toml (the
template with this run's RPC URLs and, per chain, `identity` = its genesis block hash,
METHOD.md §2) and <state_dir>/manifest.json, start the keeper. On exit, however it
happens, the keeper is cancelled and every anvil is stopped (SIGTERM, then SIGKILL
after 5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import re
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

import aiohttp

from api.tlog.heads import generate_key
from crossmargin.core.config import ChainConfig, ChainIdentity, Config, load_config, parse_config
from devnet.anvil import Node, NodeSet, anvil_binary
from devnet.deploy import check_plan, plan_chain, setup_chain
from devnet.errors import DevnetError
from devnet.evm import DEPLOYER, MULTICALL3, repo_root
from devnet.keeper import Keeper
from devnet.manifest import (
    AccountEntry,
    ChainEntry,
    HistoryEntry,
    KeeperEntry,
    Manifest,
    build_accounts,
    write_atomic,
)
from devnet.prices import feed_histories
from devnet.protocols.plan import ChainPlan
from devnet.protocols.setup import (
    check_protocol_representations,
    plan_protocols,
    setup_protocols,
)
from devnet.rpc import Rpc
from devnet.scenario import Scenario, load_scenario

T = TypeVar("T")

_PLACEHOLDER = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-[^}]*)?\}")
# A chain's one-line `rpc_urls = ["${CROSSMARGIN_RPC_<CHAIN>...}"]`: its identity goes after.
_RPC_LINE = re.compile(r'^(rpc_urls\s*=\s*\[\s*"\$\{([A-Z_][A-Z0-9_]*)[^\n]*\][ \t]*)$', re.M)


def env_var(chain: str) -> str:
    """The variable configs/devnet.toml reads a chain's RPC URL from."""
    return "CROSSMARGIN_RPC_" + chain.upper().replace("-", "_")


def with_tlog_key(config_text: str, key: Path) -> str:
    """The generated config with `api.tlog_key` naming a key in the state directory
    (generated once, then kept: tree heads it signed stay verifiable), unless the
    template names one."""
    if re.search(r"(?m)^tlog_key\s*=", config_text):
        return config_text
    line = f"tlog_key = {json.dumps(str(generate_key(key).resolve()))}"
    text, found = re.subn(r"(?m)^\[api\][ \t]*$", lambda m: f"{m.group(0)}\n{line}", config_text)
    return text if found else f"{config_text}\n[api]\n{line}\n"


class Devnet:
    """A running devnet. Build it with `Devnet.start(...)`; everything here is read-only
    data except the keeper controls and refresh_feeds()."""

    def __init__(self, manifest: Manifest, config: Config, state_dir: Path, keeper: Keeper) -> None:
        self.manifest = manifest
        self.config = config
        self.state_dir = state_dir
        self.keeper = keeper
        self._keeper_task: asyncio.Task[None] | None = None

    @property
    def config_path(self) -> Path:
        return Path(self.manifest.config_path)

    @property
    def manifest_path(self) -> Path:
        return self.state_dir / "manifest.json"

    @property
    def demo_accounts(self) -> dict[str, str]:
        """Demo account name -> address (same address on every chain)."""
        return {a.name: a.address for a in self.manifest.accounts}

    def account(self, name: str) -> AccountEntry:
        return self.manifest.account(name)

    def rpc_url(self, chain: str) -> str:
        return self.manifest.chain(chain).rpc_url

    async def refresh_feeds(self) -> None:
        """One keeper tick now (all active feeds get a round at the current chain time).
        Usable from any event loop: it opens its own HTTP session."""
        async with aiohttp.ClientSession() as session:
            await self.keeper.tick(self._rpcs(session))

    async def wait(self) -> None:
        """Sleep until cancelled; return early only by raising if the keeper crashed."""
        if self._keeper_task is not None:
            await asyncio.shield(self._keeper_task)
        await asyncio.Event().wait()

    def _rpcs(self, session: aiohttp.ClientSession) -> dict[str, Rpc]:
        return {c.name: Rpc(session, c.rpc_url, c.chain_id) for c in self.manifest.chains}

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls,
        *,
        state_dir: str | Path | None = None,
        seed: int | None = None,
        keeper: bool = True,
        keeper_interval_s: float | None = None,
        config_path: str | Path | None = None,
        scenario_path: str | Path | None = None,
    ) -> AsyncIterator[Devnet]:
        t0, started_at = time.monotonic(), datetime.now(UTC)
        root = repo_root()
        inputs = _Inputs.load(
            Path(config_path or root / "configs" / "devnet.toml"),
            Path(scenario_path or root / "configs" / "devnet-scenario.toml"),
            seed,
        )
        state = Path(state_dir or root / ".devnet")
        (state / "logs").mkdir(parents=True, exist_ok=True)
        lock = _lock(state)
        (state / "manifest.json").unlink(missing_ok=True)
        nodes = NodeSet(anvil_binary(root), state / "logs")
        kp = Keeper(inputs.feeds(), keeper_interval_s or inputs.scenario.keeper_interval_s)
        net: Devnet | None = None
        try:
            async with aiohttp.ClientSession() as session:
                started, end_ts, genesis = await _bring_up(session, nodes, inputs)
                config_out = state / "crossmargin.toml"
                urls = {name: node.url for name, node in started.items()}
                rendered = inputs.render(urls, started_at, genesis)
                write_atomic(config_out, with_tlog_key(rendered, state / "tlog-key.pem"))
                config = load_config(config_out, env={})
                for c in config.chains:
                    if c.rpc_urls != [urls[c.name]]:
                        raise DevnetError(
                            f"{inputs.config_src}: chain {c.name} must read its "
                            f"URL from ${{{env_var(c.name)}}}"
                        )
                    if c.identity != ChainIdentity(block=0, hash=genesis[c.name]):
                        raise DevnetError(
                            f"{inputs.config_src}: chain {c.name}: write its rpc_urls on "
                            "one line, so the devnet can add its genesis identity after it"
                        )
                manifest = Manifest(
                    status="ready",
                    seed=inputs.scenario.seed,
                    started_at=started_at.isoformat(timespec="seconds"),
                    ready_after_s=round(time.monotonic() - t0, 3),
                    config_path=str(config_out),
                    source_config=str(inputs.config_src),
                    scenario=str(inputs.scenario_src),
                    deployer=DEPLOYER,
                    env={env_var(n): u for n, u in urls.items()},
                    chains=[
                        _chain_entry(config, c, started[c.name], inputs.plans[c.name])
                        for c in config.chains
                    ],
                    history=HistoryEntry(
                        rounds=inputs.scenario.rounds,
                        interval_s=inputs.scenario.round_interval_s,
                        end_timestamp=end_ts,
                        chain_spread=inputs.scenario.chain_spread,
                    ),
                    keeper=KeeperEntry(enabled=keeper, interval_s=kp.interval_s),
                    accounts=inputs.accounts,
                )
                write_atomic(state / "manifest.json", manifest.model_dump_json(indent=2) + "\n")
                net = cls(manifest, config, state, kp)
                if keeper:
                    rpcs = {n: Rpc(session, node.url, node.chain_id) for n, node in started.items()}
                    net._keeper_task = asyncio.create_task(kp.run(rpcs), name="devnet-keeper")
                try:
                    yield net
                finally:
                    if net._keeper_task is not None:
                        net._keeper_task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await net._keeper_task
        finally:
            nodes.stop()
            if net is not None:
                stopped = net.manifest.model_copy(update={"status": "stopped"})
                write_atomic(state / "manifest.json", stopped.model_dump_json(indent=2) + "\n")
            lock.close()


@dataclass(frozen=True)
class _Inputs:
    """Config template and scenario, validated against each other before any process runs."""

    config_src: Path
    scenario_src: Path
    text: str
    template: Config
    scenario: Scenario
    accounts: list[AccountEntry]
    plans: dict[str, ChainPlan]  # chain -> its lending protocols and demo positions

    @classmethod
    def load(cls, config_src: Path, scenario_src: Path, seed: int | None) -> _Inputs:
        try:
            text = config_src.read_text(encoding="utf-8")
        except OSError as exc:
            raise DevnetError(f"{config_src}: cannot read: {exc.strerror}") from exc
        template = parse_config(text, env={}, source=str(config_src))
        for chain in template.chains:
            if chain.identity is not None:
                raise DevnetError(
                    f"{config_src}: chain {chain.name}: no `identity` here, the devnet "
                    "writes each chain's genesis hash into the config it generates"
                )
        scenario = load_scenario(scenario_src).with_seed(seed)
        scenario.check_against(template)
        for chain in template.chains:
            check_plan(plan_chain(template, scenario, chain))
        accounts = build_accounts(template, scenario)
        plans = {c.name: plan_protocols(template, scenario, c, accounts) for c in template.chains}
        for plan in plans.values():
            check_protocol_representations(template, plan)
        return cls(config_src, scenario_src, text, template, scenario, accounts, plans)

    def feeds(self) -> dict[str, list[str]]:
        """Chain -> its price feeds (what the keeper refreshes)."""
        return {
            c.name: [f.address for a in self.template.assets for f in a.feeds if f.chain == c.name]
            for c in self.template.chains
        }

    def render(self, urls: Mapping[str, str], at: datetime, genesis: Mapping[str, str]) -> str:
        """The template with each ${CROSSMARGIN_RPC_<CHAIN>...} replaced by its URL, and
        after each chain's `rpc_urls` line its identity: block 0 with this run's hash."""
        by_var = {env_var(n): u for n, u in urls.items()}
        identity = {
            env_var(n): f'identity = {{ block = 0, hash = "{h}" }}' for n, h in genesis.items()
        }

        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in by_var:
                raise DevnetError(f"{self.config_src}: unknown variable {m.group(1)}")
            return by_var[m.group(1)]

        def add_identity(m: re.Match[str]) -> str:
            var = m.group(2)
            return m.group(1) + ("\n" + identity[var] if var in identity else "")

        header = (
            f"# Generated by `crossmargin devnet` at {at.isoformat(timespec='seconds')} from\n"
            f"# {self.config_src} with this run's RPC URLs and genesis hashes. Rewritten on\n"
            "# every start.\n\n"
        )
        text = _RPC_LINE.sub(add_identity, self.text)
        return header + _PLACEHOLDER.sub(sub, text)


async def _bring_up(
    session: aiohttp.ClientSession, nodes: NodeSet, inputs: _Inputs
) -> tuple[dict[str, Node], int, dict[str, str]]:
    """Start every anvil, then set every chain up (tokens and feeds, then the lending
    protocols); both steps run the chains in parallel. Also returns each chain's genesis
    block hash (its identity, METHOD.md §2)."""
    template, scenario = inputs.template, inputs.scenario
    up = await _all(nodes.start(session, c.name, c.chain_id) for c in template.chains)
    started = {node.chain: node for node in up}
    rpcs = {name: Rpc(session, node.url, node.chain_id) for name, node in started.items()}
    blocks = await _all(r.call("eth_getBlockByNumber", ["0x0", False]) for r in rpcs.values())
    genesis = {name: str(b["hash"]).lower() for name, b in zip(rpcs, blocks, strict=True)}
    end_ts = await _chain_time(rpcs)
    histories = feed_histories(template, scenario, end_ts)

    async def setup(chain: ChainConfig) -> None:
        rpc = rpcs[chain.name]
        mine = [h for h in histories if h.chain == chain.name]
        await setup_chain(rpc, template, scenario, chain, mine, inputs.accounts, end_ts)
        await setup_protocols(rpc, inputs.plans[chain.name])

    await _all(setup(c) for c in template.chains)
    return started, end_ts, genesis


def _lock(state: Path) -> IO[bytes]:
    """An exclusive lock on the state directory for the devnet's lifetime."""
    handle = (state / ".lock").open("wb")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DevnetError(f"{state} is in use by another running devnet") from None
    return handle


def _chain_entry(config: Config, chain: ChainConfig, node: Node, plan: ChainPlan) -> ChainEntry:
    return ChainEntry(
        name=chain.name,
        chain_id=chain.chain_id,
        rpc_url=node.url,
        port=node.port,
        pid=node.pid,
        env_var=env_var(chain.name),
        multicall3=MULTICALL3,
        tokens={
            r.symbol: r.address
            for r in config.representations
            if r.chain == chain.name and not r.is_native
        },
        feeds={
            a.symbol: f.address for a in config.assets for f in a.feeds if f.chain == chain.name
        },
        sequencer_uptime_feed=chain.sequencer_uptime_feed,
        log=str(node.log_path),
        aave_v3=plan.aave,
        morpho_blue=plan.morpho,
        extra_tokens=plan.extra_tokens,
    )


async def _all(coros: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run concurrently; on failure cancel the rest and raise the first error itself
    (chained to the whole group) rather than an ExceptionGroup."""
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(c) for c in coros]
    except ExceptionGroup as group:
        first: BaseException = group
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from group
    return [t.result() for t in tasks]


async def _chain_time(rpcs: Mapping[str, Rpc]) -> int:
    """The earliest head timestamp over the chains: no chain is behind it."""
    heads = await _all(r.call("eth_getBlockByNumber", ["latest", False]) for r in rpcs.values())
    return min(int(h["timestamp"], 16) for h in heads)
