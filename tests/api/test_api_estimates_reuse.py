"""The API looks up the current §6 estimates at most once per `ESTIMATES_TTL_S` (the
history store's freshness check is a query and a config hash, which every request had
paid); a past time's estimates (§15) are always looked up."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from api import service as service_module
from api.metrics import Metrics
from api.service import Service
from api.store import Store
from crossmargin.core.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]
ENV = {n: "http://127.0.0.1:9" for n in ("ETHEREUM", "ARBITRUM", "OPTIMISM", "BASE")}


class _Engine:
    """What Service asks of the engine here: the method's config and the estimates."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.asked: list[int | None] = []

    def method(self, method: str | None) -> Config:
        risk = self.config.risk.model_copy(update={"method": method or self.config.risk.method})
        return self.config.model_copy(update={"risk": risk})

    async def estimates(self, before: int | None = None) -> Any:
        self.asked.append(before)
        return None


def test_current_estimates_are_reused_for_a_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(
        ROOT / "configs" / "devnet.toml", env={f"{k}_RPC_URL": v for k, v in ENV.items()}
    )
    engine = _Engine(config)
    store = Store.open(f"sqlite:///{tmp_path / 's.db'}")
    try:
        service = Service(config, engine, {}, store, Metrics(dict))  # type: ignore[arg-type]

        async def ask(before: int | None = None) -> tuple[Any, str]:
            return await service.estimates(before)

        assert asyncio.run(ask()) == (None, "config")
        asyncio.run(ask())
        asyncio.run(ask())
        assert engine.asked == [None]
        asyncio.run(ask(1_700_000_000))
        asyncio.run(ask(1_700_000_000))
        assert engine.asked == [None, 1_700_000_000, 1_700_000_000]
        monkeypatch.setattr(service_module, "ESTIMATES_TTL_S", 0.0)
        service._estimates_until = 0.0
        asyncio.run(ask())
        asyncio.run(ask())
        assert engine.asked.count(None) == 3
    finally:
        store.close()
