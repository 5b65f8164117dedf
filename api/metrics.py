"""Prometheus metrics, in a registry per application (no process-global collectors).

- `crossmargin_http_request_duration_seconds{method,route,status}`: request latency;
  `route` is the route template (never the raw path, whose cardinality is unbounded).
- `crossmargin_rpc_requests_total{chain,endpoint,outcome}`: HTTP requests to RPC
  endpoints by outcome (`ok`, `failed`, `rate_limited`), read at scrape time from the
  adapters' per-endpoint stats; `endpoint` is the endpoint's index in config (URLs may
  carry keys). `crossmargin_rpc_calls_total{chain,endpoint}` counts JSON-RPC calls.
- `crossmargin_cache_lookups_total{layer,outcome}`: results served from memory (`hit`),
  joined to a running computation (`coalesced`), found stored (`store`), or computed.
- `crossmargin_snapshots_stored_total`, `crossmargin_requests_rejected_total{status}`.
- `crossmargin_worker_info{worker,pid}` (1), under `crossmargin serve --workers N`: each
  worker has its own registry, so a scrape sees one worker's counts (scrape each).
- `crossmargin_store_rejected_total{reason}`: stored documents found by a request's
  cache key and not served (METHOD.md §10): `id_mismatch` (the id is not the sha256
  of the content), `malformed`, `request_mismatch` (kind, account, target, asset,
  method or config), `pins_mismatch`, `estimates_mismatch`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from adapters.evm import EvmAdapter
from api.problems import Handler

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RpcCollector(Collector):
    def __init__(self, adapters: Callable[[], Mapping[str, EvmAdapter]]) -> None:
        self._adapters = adapters

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "crossmargin_rpc_requests",
            "HTTP requests to RPC endpoints, by outcome",
            labels=["chain", "endpoint", "outcome"],
        )
        calls = CounterMetricFamily(
            "crossmargin_rpc_calls", "JSON-RPC calls sent", labels=["chain", "endpoint"]
        )
        for name, adapter in self._adapters().items():
            for i, ep in enumerate(adapter.rpc.endpoints):
                s, idx = ep.stats, str(i)
                ok = max(0, s.requests - s.failures - s.rate_limited)
                requests.add_metric([name, idx, "ok"], ok)
                requests.add_metric([name, idx, "failed"], s.failures)
                requests.add_metric([name, idx, "rate_limited"], s.rate_limited)
                calls.add_metric([name, idx], s.calls)
        return [requests, calls]


class Metrics:
    def __init__(
        self, adapters: Callable[[], Mapping[str, EvmAdapter]], *, worker: int | None = None
    ) -> None:
        self.registry = CollectorRegistry()
        if worker is not None:  # which process of `serve --workers` this scrape saw
            Gauge(
                "crossmargin_worker_info",
                "This API worker process",
                ["worker", "pid"],
                registry=self.registry,
            ).labels(str(worker), str(os.getpid())).set(1)
        self.latency = Histogram(
            "crossmargin_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route", "status"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.cache = Counter(
            "crossmargin_cache_lookups",
            "Result lookups by layer and outcome",
            ["layer", "outcome"],
            registry=self.registry,
        )
        self.snapshots = Counter(
            "crossmargin_snapshots_stored", "Snapshots appended", registry=self.registry
        )
        self.store_rejected = Counter(
            "crossmargin_store_rejected",
            "Stored documents found by cache key but not served (METHOD.md §10)",
            ["reason"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "crossmargin_requests_rejected",
            "Requests refused by authentication or rate limits",
            ["status"],
            registry=self.registry,
        )
        self.registry.register(RpcCollector(adapters))

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        response = await handler(request)
        route = request.match_info.route.resource
        label = route.canonical if route is not None else "unmatched"
        self.latency.labels(request.method, label, str(response.status)).observe(
            time.perf_counter() - start
        )
        if response.status in (401, 403, 429):
            self.rejected.labels(str(response.status)).inc()
        return response

    async def handler(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
