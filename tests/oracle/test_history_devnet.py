"""Price history on the devnet: sync every feed's rounds into a temporary SQLite store
(oracle/history.py), estimate sigma and rho (oracle/estimation.py), and compare with
the generator that wrote the rounds (configs/devnet-scenario.toml: daily vols ETH 0.035,
BTC 0.03, USDC 0.001; rho ETH/BTC 0.8, the rest 0).

Two comparisons: exact (the estimate equals the EWMA of the generator's own returns on
the same days, so the sync lost, shifted or duplicated nothing) and statistical (the
estimate is within three standard errors of the generator's parameters).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from oracle_chain import Chain

from adapters.evm import ChainReader
from crossmargin.cli import main
from crossmargin.core.config import Config
from crossmargin.core.errors import TransportError
from crossmargin.engine import Engine
from devnet import BackgroundDevnet, Devnet
from devnet.prices import price_paths
from devnet.scenario import load_scenario
from oracle.estimation import ewma_covariance, ewma_weights, sigma_rho
from oracle.history import SyncReport, sync_history
from oracle.store import HistoryStore

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = load_scenario(ROOT / "configs" / "devnet-scenario.toml")
TRUE_SIGMA = {p.asset: p.daily_vol for p in SCENARIO.prices}
TRUE_RHO = {("ETH", "BTC"): 0.8, ("ETH", "USDC"): 0.0, ("BTC", "USDC"): 0.0}


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    with BackgroundDevnet(state_dir=tmp_path_factory.mktemp("history-devnet"), keeper=False) as n:
        yield n


@pytest.fixture(autouse=True)
def clean(net: Devnet) -> Iterator[None]:
    chains = [Chain(net.rpc_url(c.name)) for c in net.config.chains]
    snaps = [c.snapshot() for c in chains]
    yield
    for c, s in zip(chains, snaps, strict=True):
        c.revert(s)


def sync(config: Config, store: HistoryStore, fail_after: int | None = None) -> SyncReport:
    async def run() -> SyncReport:
        async with Engine.connect(config) as engine:
            readers: dict[str, ChainReader] = dict(engine.readers)
            if fail_after is not None:
                readers = {n: Flaky(r, fail_after) for n, r in readers.items()}
            return await sync_history(config, readers, store)

    return asyncio.run(run())


class Flaky:
    """A reader whose endpoint dies after `n` multicalls."""

    def __init__(self, inner: ChainReader, n: int) -> None:
        self.inner, self.chain, self.left = inner, inner.chain, n

    async def pin(self) -> object:
        return await self.inner.pin()

    async def read(self, calls: list[object], pin: object) -> list[object]:
        if self.left <= 0:
            raise TransportError(self.chain.chain_id, "endpoint died")
        self.left -= 1
        return await self.inner.read(calls, pin)  # type: ignore[arg-type]


def store_at(tmp_path: Path) -> HistoryStore:
    return HistoryStore.open(f"sqlite:///{tmp_path / 'history.sqlite'}")


def dump(store: HistoryStore) -> dict[tuple[int, str], list[tuple[str, str, str, int]]]:
    return {
        k: [(c.day.isoformat(), c.round_id, c.answer, c.updated_at) for c in v]
        for k, v in store.closes().items()
    }


def test_sync_stores_every_complete_day_and_estimates_the_generator(
    net: Devnet, tmp_path: Path
) -> None:
    store = store_at(tmp_path)
    report = sync(net.config, store)
    assert report.errors == {}
    assert report.multicalls == {c.name: 2 for c in net.config.chains}  # head + one batch
    closes = store.closes()
    assert len(closes) == 12
    counts = {len(v) for v in closes.values()}
    assert counts <= {SCENARIO.rounds - 1, SCENARIO.rounds}  # the last round's day is today
    for rows in closes.values():
        assert [int(c.round_id) for c in rows] == list(range(1, len(rows) + 1))

    est = store.estimates(net.config)
    assert est.sigma_source == ("ewma", "ewma", "ewma")
    n = est.observations
    assert n == min(counts) - 1

    # Exact: the generator's returns r_1..r_n (oldest first), EWMA with the config lambda.
    paths = price_paths(SCENARIO)
    assets = [a.symbol for a in net.config.assets]
    gen = np.column_stack([np.diff(np.log(paths[a]))[:n] for a in assets])
    sd, rho = sigma_rho(ewma_covariance(gen, net.config.risk.ewma_lambda))
    np.testing.assert_allclose(est.sigma, sd, rtol=1e-6)
    np.testing.assert_allclose(est.correlation, rho, atol=1e-6)

    # Statistical: within 3 standard errors of the generator's parameters, for the EWMA
    # (effective sample 1 / sum w^2, ~32 days) and for equal weights (lambda -> 1).
    for lam in (net.config.risk.ewma_lambda, 0.9999):
        n_eff = 1.0 / float((ewma_weights(n, lam) ** 2).sum())
        sd, rho = sigma_rho(ewma_covariance(gen, lam))
        for i, a in enumerate(assets):
            assert abs(sd[i] / TRUE_SIGMA[a] - 1) < 3 / math.sqrt(2 * n_eff), (a, lam, sd[i])
        for (a, b), r in TRUE_RHO.items():
            got = rho[assets.index(a), assets.index(b)]
            assert abs(got - r) < 3 * (1 - r**2) / math.sqrt(n_eff), (a, b, lam, got)
    lam = net.config.risk.ewma_lambda
    n_eff = 1.0 / float((ewma_weights(n, lam) ** 2).sum())
    for i, a in enumerate(assets):
        assert abs(est.sigma[i] / TRUE_SIGMA[a] - 1) < 3 / math.sqrt(2 * n_eff)
    assert abs(est.correlation[0][1] - 0.8) < 3 * 0.36 / math.sqrt(n_eff)


def test_second_sync_reads_only_the_heads_and_a_new_day_adds_one_close(
    net: Devnet, tmp_path: Path
) -> None:
    store = store_at(tmp_path)
    sync(net.config, store)
    before = dump(store)
    again = sync(net.config, store)
    assert again.multicalls == {c.name: 1 for c in net.config.chains}
    assert {f.closes_written for f in again.feeds} == {0}
    assert dump(store) == before

    for c in net.config.chains:  # a day later, with a fresh round on every feed
        Chain(net.rpc_url(c.name)).advance(86_400)
    asyncio.run(net.refresh_feeds())
    later = sync(net.config, store)
    assert {f.closes_written for f in later.feeds} == {1}
    after = dump(store)
    for key, rows in after.items():
        assert rows[: len(before[key])] == before[key]  # stored closes never change
        assert rows[-1][1] == str(SCENARIO.rounds)  # the new close: the start-up round


def test_interrupted_sync_resumes_to_the_same_store(net: Devnet, tmp_path: Path) -> None:
    cfg = net.config.model_copy(
        update={"history": net.config.history.model_copy(update={"batch_rounds": 20})}
    )
    clean_store = HistoryStore.open(f"sqlite:///{tmp_path / 'clean.sqlite'}")
    sync(cfg, clean_store)
    store = store_at(tmp_path)
    broken = sync(cfg, store, fail_after=3)
    assert set(broken.errors) == {c.name for c in cfg.chains}
    for name, error in broken.errors.items():  # the public code and sentence, no node text
        code, _, sentence = error.partition(": ")
        assert code, error
        assert name in sentence, error
        assert "http" not in error, error
        assert "127.0.0.1" not in error, error
    partial = dump(store)
    assert 0 < sum(map(len, partial.values())) < sum(map(len, dump(clean_store).values()))
    resumed = sync(cfg, store)
    assert resumed.errors == {}
    assert all(f.backfill_done for f in resumed.feeds)
    assert dump(store) == dump(clean_store)


def test_engine_takes_sigma_and_rho_from_the_history(net: Devnet, tmp_path: Path) -> None:
    store = store_at(tmp_path)
    sync(net.config, store)
    account = net.demo_accounts["carol"]

    async def run(history: HistoryStore | None) -> object:
        async with Engine.connect(net.config, history=history) as engine:
            return await engine.margin(account, "ethereum")

    with_history = asyncio.run(run(store))
    without = asyncio.run(run(None))
    est = store.estimates(net.config)
    p = with_history.parameters  # type: ignore[attr-defined]
    assert p.sigma_source == {"ETH": "ewma", "BTC": "ewma", "USDC": "ewma"}
    assert p.correlation_source["ETH"]["BTC"] == "ewma"
    assert p.history.observations == est.observations
    assert float(p.sigma["ETH"]) == pytest.approx(est.sigma[0], abs=5e-7)
    q = without.parameters  # type: ignore[attr-defined]
    assert q.sigma_source == {"ETH": "default", "BTC": "default", "USDC": "default"}
    assert q.correlation_source["ETH"]["BTC"] == "config"
    assert q.history.observations == 0
    # Same balances and prices; only the risk parameters differ.
    assert with_history.totals.collateral_usd == without.totals.collateral_usd  # type: ignore[attr-defined]
    assert with_history.haircuts != without.haircuts  # type: ignore[attr-defined]


def test_prices_sync_command(
    net: Devnet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    assert main(["prices", "sync", "--config", str(net.config_path), "--db", url]) == 0
    out = capsys.readouterr().out
    assert "closes written" in out
    assert "ethereum: 2 multicalls" in out
    assert len(HistoryStore.open(url).closes()) == 12
