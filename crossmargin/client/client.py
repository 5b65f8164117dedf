"""The client: one typed method per API operation, over one aiohttp session.

Lifecycle: `async with Client(url) as api:` opens the session and closes it (or pass
your own `session=`, which the client then leaves open). Every method returns the
pydantic model the server serialised (api/models.py, crossmargin/pipeline/report.py);
the computations that are stored as snapshots (margin, capacity, stress) return
`Served(report, snapshot_id)`, the id from the `Snapshot-Id` header.

Retries: a 429, or a 503 problem, is asked again after the server's `Retry-After`
(seconds or an HTTP date), or a short backoff when it gives none, at most
`Retry.attempts` times in all and never waiting longer than `Retry.max_wait_s` at once:
a server that asks for more is answered with `RateLimited` at once. Nothing else is
retried: a 4xx is the caller's to fix, and a transport fault is `Unreachable`.

`tests/client/test_client_operations.py` checks that every operation of /openapi.json
has its method here, with every query parameter and body field as a keyword.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp
from pydantic import BaseModel, ValidationError

from api.models import (
    AssetList,
    ChainList,
    ConsistencyProof,
    Health,
    InclusionProof,
    Liveness,
    LogKey,
    MarginBatch,
    Problem,
    SignedTreeHead,
    Snapshot,
    SnapshotPage,
)
from api.watch.models import AlertList, Deleted, Watch, WatchList
from api.watch.rules import Thresholds
from crossmargin.client.errors import ApiError, BadAnswer, RateLimited, Unreachable
from crossmargin.pipeline.report import CapacityReport, MarginReport, StressReport

M = TypeVar("M", bound=BaseModel)
Method = Literal["var", "es"]
Kind = Literal["margin", "capacity", "stress"]
KEY_HEADER = "X-API-Key"
PROBLEM = "application/problem+json"
RETRY_STATUSES = frozenset({429, 503})


def _agent() -> str:
    try:
        return f"crossmargin-client/{version('crossmargin')}"
    except PackageNotFoundError:
        return "crossmargin-client"


@dataclass(frozen=True, slots=True)
class Retry:
    """Bounded retries of 429/503: `attempts` requests in all; one wait at most
    `max_wait_s` (a longer Retry-After is not waited for); `backoff_s` doubles per try
    when the server gives no Retry-After."""

    attempts: int = 4
    max_wait_s: float = 30.0
    backoff_s: float = 0.5


@dataclass(frozen=True, slots=True)
class Served(Generic[M]):
    """A computation's report and the id of the snapshot it was stored as."""

    report: M
    snapshot_id: str


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _where(url: str) -> str:
    """scheme://host[:port] of the server, never a path or credentials."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def _query(**params: object) -> dict[str, str]:
    return {k: str(v) for k, v in params.items() if v is not None}


def _body(**fields: object) -> dict[str, object]:
    """A JSON body of the fields given (None: not given); a chain id as its string."""
    return {k: str(v) if k == "target_chain" else v for k, v in fields.items() if v is not None}


class Client:
    """Typed access to one crossmargin server. `key`: the API key, sent as X-API-Key
    on every request (a keyless deployment needs none)."""

    def __init__(
        self,
        base_url: str,
        *,
        key: str | None = None,
        timeout_s: float = 120.0,
        retry: Retry | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the server URL must be http(s)://host[:port]")
        self.base_url = base_url.rstrip("/")
        self.retry = retry or Retry()
        self._headers = {"Accept": "application/json", "User-Agent": _agent()}
        if key:
            self._headers[KEY_HEADER] = key
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session
        self._owned = session is None

    async def __aenter__(self) -> Self:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owned and self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------ operations

    async def get_margin(
        self,
        address: str,
        *,
        target_chain: str | int | None = None,
        method: Method | None = None,
        at: int | None = None,
        blocks: str | None = None,
        addresses: str | None = None,
    ) -> Served[MarginReport]:
        """Unified margin account (METHOD.md §2-§7); as of `at` (unix seconds) or
        `blocks` ("chain:number,...", §15), at `addresses` ("chain:0x..,...", §1)."""
        q = _query(
            target_chain=target_chain, method=method, at=at, blocks=blocks, addresses=addresses
        )
        return await self._served(MarginReport, f"{self._acct(address)}/margin", q)

    async def get_capacity(
        self,
        address: str,
        *,
        target_chain: str | int | None = None,
        asset: str | None = None,
        method: Method | None = None,
        at: int | None = None,
        blocks: str | None = None,
        addresses: str | None = None,
    ) -> Served[CapacityReport]:
        """Borrowing capacity on the target chain (§8), per asset or of one; as of and
        addresses as for `get_margin`."""
        q = _query(
            target_chain=target_chain,
            asset=asset,
            method=method,
            at=at,
            blocks=blocks,
            addresses=addresses,
        )
        return await self._served(CapacityReport, f"{self._acct(address)}/capacity", q)

    async def get_stress(
        self,
        address: str,
        *,
        at: int | None = None,
        blocks: str | None = None,
        addresses: str | None = None,
    ) -> Served[StressReport]:
        """Equity after each configured stress scenario (§9); as of and addresses as for
        `get_margin`."""
        q = _query(at=at, blocks=blocks, addresses=addresses)
        return await self._served(StressReport, f"{self._acct(address)}/stress", q)

    async def post_margin_batch(
        self,
        accounts: Sequence[str],
        *,
        target_chain: str | int | None = None,
        method: Method | None = None,
        at: int | None = None,
        blocks: Mapping[str, int] | None = None,
        addresses: Mapping[str, Mapping[str, str]] | None = None,
    ) -> MarginBatch:
        """Margin of many accounts; an account that cannot be computed has its problem
        in its item's `error` (the batch itself still succeeds). As of `at` or `blocks`
        ({chain: number}, §15); `addresses`: {account: {chain: address}} (§1)."""
        body: dict[str, Any] = {"accounts": list(accounts)}
        if target_chain is not None:
            body["target_chain"] = str(target_chain)
        if method is not None:
            body["method"] = method
        if at is not None:
            body["at"] = at
        if blocks:
            body["blocks"] = dict(blocks)
        if addresses:
            body["addresses"] = {a: dict(m) for a, m in addresses.items()}
        model, _ = await self._call(MarginBatch, "POST", "/v1/margin:batch", body=body)
        return model

    async def get_chains(self) -> ChainList:
        return (await self._call(ChainList, "GET", "/v1/chains"))[0]

    async def get_assets(self) -> AssetList:
        return (await self._call(AssetList, "GET", "/v1/assets"))[0]

    async def get_health(self) -> Health:
        """Readiness; a `down` deployment's health (HTTP 503) is returned, not raised."""
        return (await self._call(Health, "GET", "/v1/health", document_503=True))[0]

    async def get_liveness(self) -> Liveness:
        return (await self._call(Liveness, "GET", "/v1/health/live"))[0]

    async def get_snapshot(self, snapshot_id: str) -> Snapshot:
        """One stored snapshot, with the blobs its document names."""
        path = f"/v1/snapshots/{quote(snapshot_id, safe='')}"
        return (await self._call(Snapshot, "GET", path))[0]

    async def list_snapshots(
        self,
        address: str,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        kind: Kind | None = None,
    ) -> SnapshotPage:
        """One page of an account's snapshots (of one `kind` if given), newest first,
        each with its headline figures; pass the page's `next_cursor` as `cursor` for
        the next."""
        q = _query(limit=limit, cursor=cursor, kind=kind)
        return (await self._call(SnapshotPage, "GET", f"{self._acct(address)}/snapshots", q))[0]

    async def get_tree_head(self) -> SignedTreeHead:
        """The transparency log's latest signed tree head (§10): keep it for
        `crossmargin audit verify --tree-head`."""
        return (await self._call(SignedTreeHead, "GET", "/v1/log/tree-head"))[0]

    async def get_log_key(self) -> LogKey:
        """The Ed25519 public key that signs tree heads."""
        return (await self._call(LogKey, "GET", "/v1/log/key"))[0]

    async def get_inclusion_proof(
        self, snapshot_id: str, *, tree_size: int | None = None
    ) -> InclusionProof:
        """RFC 9162 inclusion proof of a snapshot id in the tree of `tree_size` leaves
        (default: the whole log)."""
        path = f"/v1/log/inclusion/{quote(snapshot_id, safe='')}"
        return (await self._call(InclusionProof, "GET", path, _query(tree_size=tree_size)))[0]

    async def get_consistency_proof(
        self, *, first: int | None = None, second: int | None = None
    ) -> ConsistencyProof:
        """RFC 9162 consistency proof: the tree of `first` leaves is a prefix of the tree
        of `second` (default: the whole log)."""
        q = _query(first=first, second=second)
        return (await self._call(ConsistencyProof, "GET", "/v1/log/consistency", q))[0]

    async def create_watch(
        self,
        accounts: Sequence[str],
        *,
        thresholds: Thresholds,
        webhook_url: str,
        secret: str,
        name: str | None = None,
        target_chain: str | int | None = None,
        method: Method | None = None,
    ) -> Watch:
        """Watch accounts (§14): alerts on threshold crossings go to `webhook_url`,
        signed with `secret` (HMAC-SHA256). Needs a key."""
        body = _body(
            accounts=list(accounts),
            thresholds=thresholds.model_dump(exclude_defaults=True),
            webhook_url=webhook_url,
            secret=secret,
            name=name,
            target_chain=target_chain,
            method=method,
        )
        return (await self._call(Watch, "POST", "/v1/watches", body=body))[0]

    async def list_watches(self) -> WatchList:
        """This key's watches."""
        return (await self._call(WatchList, "GET", "/v1/watches"))[0]

    async def get_watch(self, watch_id: str) -> Watch:
        return (await self._call(Watch, "GET", self._watch(watch_id)))[0]

    async def update_watch(
        self,
        watch_id: str,
        *,
        accounts: Sequence[str] | None = None,
        thresholds: Thresholds | None = None,
        webhook_url: str | None = None,
        secret: str | None = None,
        name: str | None = None,
        target_chain: str | int | None = None,
        method: Method | None = None,
    ) -> Watch:
        """Change only the fields given."""
        body = _body(
            accounts=None if accounts is None else list(accounts),
            thresholds=None if thresholds is None else thresholds.model_dump(exclude_defaults=True),
            webhook_url=webhook_url,
            secret=secret,
            name=name,
            target_chain=target_chain,
            method=method,
        )
        return (await self._call(Watch, "PATCH", self._watch(watch_id), body=body))[0]

    async def delete_watch(self, watch_id: str) -> Deleted:
        """Its undelivered alerts become dead."""
        return (await self._call(Deleted, "DELETE", self._watch(watch_id)))[0]

    async def list_alerts(
        self, *, watch_id: str | None = None, status: str | None = None, limit: int | None = None
    ) -> AlertList:
        """This key's alerts (newest first) and their delivery state."""
        q = _query(watch_id=watch_id, status=status, limit=limit)
        return (await self._call(AlertList, "GET", "/v1/alerts", q))[0]

    # ------------------------------------------------------------ plumbing

    @staticmethod
    def _watch(watch_id: str) -> str:
        return f"/v1/watches/{quote(watch_id, safe='')}"

    @staticmethod
    def _acct(address: str) -> str:
        return f"/v1/accounts/{quote(address, safe='')}"

    async def _served(self, model: type[M], path: str, query: Mapping[str, str]) -> Served[M]:
        report, headers = await self._call(model, "GET", path, query)
        sid = headers.get("Snapshot-Id")
        if sid is None:
            raise BadAnswer(f"{_where(self.base_url)} answered {path} without a Snapshot-Id")
        return Served(report, sid)

    async def _call(
        self,
        model: type[M],
        verb: str,
        path: str,
        query: Mapping[str, str] | None = None,
        *,
        body: Any = None,
        document_503: bool = False,
    ) -> tuple[M, Mapping[str, str]]:
        """One operation: send, retry 429/503 problems as allowed, parse the model."""
        if self._session is None:
            raise RuntimeError("use the client in `async with Client(...)`")
        for attempt in range(1, self.retry.attempts + 1):
            status, ctype, headers, raw = await self._send(verb, path, query, body)
            if status < 400 or (document_503 and status == 503 and ctype != PROBLEM):
                return self._parse(model, raw, path), headers
            problem = self._problem(status, ctype, raw)
            if status not in RETRY_STATUSES:
                raise ApiError(problem)
            wait = retry_after(headers.get("Retry-After"))
            hint = wait
            if wait is None:
                wait = self.retry.backoff_s * 2 ** (attempt - 1)
            if attempt == self.retry.attempts or wait > self.retry.max_wait_s:
                raise RateLimited(problem, hint)
            await asyncio.sleep(wait)
        raise AssertionError("unreachable: the loop returns or raises")

    async def _send(
        self, verb: str, path: str, query: Mapping[str, str] | None, body: Any
    ) -> tuple[int, str, Mapping[str, str], bytes]:
        assert self._session is not None
        url = self.base_url + path
        try:
            async with self._session.request(
                verb, url, params=query or None, json=body, headers=self._headers
            ) as resp:
                raw = await resp.read()
                return resp.status, resp.content_type, resp.headers, raw
        except TimeoutError:
            raise Unreachable(f"{_where(self.base_url)} did not answer in time") from None
        except aiohttp.ClientConnectionError as exc:
            kind = type(exc).__name__
            raise Unreachable(f"cannot reach {_where(self.base_url)} ({kind})") from None
        except aiohttp.ClientError as exc:
            kind = type(exc).__name__
            raise Unreachable(f"bad HTTP exchange with {_where(self.base_url)} ({kind})") from None

    def _parse(self, model: type[M], raw: bytes, path: str) -> M:
        try:
            return model.model_validate_json(raw)
        except ValidationError:
            raise BadAnswer(
                f"{_where(self.base_url)} answered {path} with something that is not "
                f"a {model.__name__}"
            ) from None

    def _problem(self, status: int, ctype: str, raw: bytes) -> Problem:
        """The answer's problem, or one made up from the status when it has none (a
        proxy's error page)."""
        if ctype == PROBLEM:
            try:
                return Problem.model_validate_json(raw)
            except ValidationError:
                pass
        return Problem(
            title=f"HTTP {status}",
            status=status,
            code=f"http_{status}",
            detail=f"{_where(self.base_url)} answered HTTP {status} without a problem body",
        )
