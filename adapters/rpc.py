"""JSON-RPC over aiohttp: the one place where bytes leave the process.

A chain's endpoints (its `rpc_urls`, in failover order) each carry their own state: a
throttle (`rate_limit_rps`), a concurrency bound (`max_concurrency`), a verified chain
id, a rate-limit back-off, a cool-down after faults, and the adaptive chunk size the
multicall reader uses. Library exceptions and node answers are mapped here, once, into
the project's error tree (`classify`); `attempt` then decides what is retried:

- RateLimited: that endpoint waits `retry_after` (Retry-After, `backoff_seconds`) or a
  jittered exponential back-off while another endpoint is tried; a wait longer than
  the remaining budget gives up at once.
- TransportError, PinUnavailable, HeadWentBackwards: the endpoint cools down
  (`cooldown_s`) and the next one is tried; with none healthy, jittered exponential
  back-off first.
- EndpointRefused (ChainIdMismatch, BlockHashMismatch): the endpoint is refused for the
  life of the client. An endpoint proves itself once, before its first use: its
  `eth_chainId` and, where config gives an `identity`, its block at that height
  (METHOD.md §2), in one batch.
- PayloadTooLarge, or RequestTimeout of a multi-call request: the endpoint's chunk size
  is halved and the error goes to the caller, which splits the batch.
- Any other RpcError: raised at once (the node answered). Anything outside the tree is
  a bug: raised at once, never retried.

All of it within `retries` retries and the `retry_budget_s` deadline of the operation.
"""

from __future__ import annotations

import asyncio
import binascii
import io
import itertools
import json
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import aiohttp
from asyncio_throttle.throttler import Throttler

from crossmargin.core.config import ChainConfig
from crossmargin.core.errors import (
    BadResponse,
    BlockHashMismatch,
    ChainError,
    ChainIdMismatch,
    EndpointRefused,
    HeadWentBackwards,
    NoUsableEndpoint,
    PayloadTooLarge,
    PinUnavailable,
    RateLimited,
    RequestTimeout,
    RpcError,
    TransportError,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RawParams:
    """A request's `params` already encoded as a JSON array (the concatenation of
    `parts`), spliced into the body as is: for eth_call's calldata (hundreds of KB of hex
    per multicall), which json.dumps would scan character by character for escaping
    (~1.5 us per call of the multicall). Parts, so the hex is copied once, into the body."""

    parts: tuple[bytes, ...]


def _body(rid: int, method: str, params: list[Any] | RawParams) -> Any:
    """One request's JSON-RPC object, or its bytes when `params` are already JSON."""
    if isinstance(params, RawParams):
        head = json.dumps({"jsonrpc": "2.0", "id": rid, "method": method}, separators=(",", ":"))
        return b"".join([head[:-1].encode(), b',"params":', *params.parts, b"}"])
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}


_WHITESPACE = b" \t\r\n"


def hex_result(raw: bytes, rid: int) -> bytes | None:
    """The result of a reply laid out exactly `{"jsonrpc":"2.0","id":<rid>,"result":"0x<hex>"}`
    (how anvil and geth answer eth_call), as bytes; None for any other reply, which the
    caller parses as JSON. A multicall's result is hundreds of KB of hex that json.loads
    would scan into a str only for it to be decoded again (~200 us per 1,000 calls,
    ~10x this). unhexlify takes nothing but pairs of hex digits, so whatever it accepts
    here is what json.loads and the decoding would have given."""
    head = b'{"jsonrpc":"2.0","id":%d,"result":"0x' % rid
    end = len(raw)
    while end and raw[end - 1] in _WHITESPACE:
        end -= 1
    if not raw.startswith(head) or raw[end - 2 : end] != b'"}':
        return None
    try:
        return binascii.unhexlify(memoryview(raw)[len(head) : end - 2])
    except ValueError:
        return None


# anvil answers a body over 2 MiB with HTTP 200 and a non-array -32600 (and then drops
# the connection); hosted providers cap lower or higher. Requests stay under this.
MAX_BODY_BYTES = 1_500_000
GROW_AFTER = 4  # full-size successes before a shrunk chunk size doubles again
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 2.0

_RATE_LIMIT_CODES = frozenset({429, -32005, -32029, -32090})
_RATE_LIMIT_WORDS = ("rate limit", "too many requests", "request limit", "exceeded the quota")
_TOO_LARGE_WORDS = (
    "too large",
    "too big",
    "size exceeded",
    "size limit",
    "out of gas",
    "gas required exceeds",
)
_PIN_WORDS = (
    "header not found",
    "unknown block",
    "block not found",
    "not canonical",
    "missing trie node",
    "resource not found",
    # the block is known but its state is gone (not an archive node, history pruned):
    # anvil --prune-history, erigon/reth without the history
    "blockoutofrange",
    "historical state",
    "state histories",
    "state is not available",
)
_PIN_CODES = frozenset({-32001})

Request = tuple[str, list[Any]]


@dataclass
class EndpointStats:
    """Counted per endpoint so benchmarks and /metrics can report RPC use honestly."""

    requests: int = 0  # HTTP requests sent
    calls: int = 0  # JSON-RPC calls in them (a batch counts each)
    failures: int = 0
    rate_limited: int = 0
    shrinks: int = 0


class Endpoint:
    """One RPC URL of a chain and everything learned about it."""

    def __init__(self, url: str, chain: ChainConfig) -> None:
        self.url = url
        rps = chain.rate_limit_rps
        self.throttle = Throttler(rate_limit=max(1, math.floor(rps)), period=max(1.0, 1.0 / rps))
        self.slots = asyncio.Semaphore(chain.max_concurrency)
        self.max_chunk = chain.max_calls_per_batch
        self.chunk = self.max_chunk
        self.verified = False  # proved it is the configured chain (id and identity)
        self.refused: EndpointRefused | None = None  # why it is never used again
        self.last_error: ChainError | None = None  # the latest fault (for /v1/health)
        self.not_before = 0.0  # hard: a rate limit asked us to wait until then
        self.cooldown_until = 0.0  # soft: passed over while another endpoint is healthy
        self.stats = EndpointStats()
        self._streak = 0

    def shrink(self, n_calls: int) -> None:
        """Halve the chunk size below a request of `n_calls` that was too much."""
        self.chunk = max(1, min(self.chunk, n_calls // 2))
        self._streak = 0
        self.stats.shrinks += 1

    def succeeded(self, n_calls: int) -> None:
        """Grow a shrunk chunk size back once requests of its full size keep succeeding."""
        self.cooldown_until = 0.0
        if self.chunk < self.max_chunk and n_calls >= self.chunk:
            self._streak += 1
            if self._streak >= GROW_AFTER:
                self.chunk = min(self.max_chunk, self.chunk * 2)
                self._streak = 0


def backoff(attempt: int) -> float:
    """Jittered exponential back-off: 0.5x..1.5x of base * 2^attempt, capped."""
    base: float = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0**attempt)
    return base * (0.5 + random.random())


def retry_after_header(value: str | None) -> float | None:
    """Retry-After as delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
        return max(0.0, float(when) - time.time())
    except (TypeError, ValueError):
        return None


def classify(
    chain_id: int,
    endpoint: str,
    error: Any,
    n_calls: int,
    retry_after: float | None = None,
) -> ChainError:
    """A JSON-RPC error object -> the project's error. Codes are not standard across
    nodes (-32000 means anything), so a few message phrases decide, here and only here."""
    err = error if isinstance(error, dict) else {"message": str(error)}
    raw_code = err.get("code", 0)
    code = raw_code if isinstance(raw_code, int) else 0
    message = str(err.get("message", ""))[:300]
    data = err.get("data")
    lower = message.lower()
    if code in _RATE_LIMIT_CODES or any(w in lower for w in _RATE_LIMIT_WORDS):
        if isinstance(data, dict):
            for key in ("backoff_seconds", "retry_after", "retryAfter"):
                if isinstance(data.get(key), int | float):
                    retry_after = max(0.0, float(data[key]))
                    break
        return RateLimited(
            chain_id, f"{code} {message}", retry_after=retry_after, endpoint=endpoint
        )
    if any(w in lower for w in _TOO_LARGE_WORDS) or (code == -32600 and n_calls > 1):
        # -32600 for a request we built ourselves means the node refused its size.
        return PayloadTooLarge(chain_id, n_calls, f"{code} {message}", endpoint=endpoint)
    if code in _PIN_CODES or any(w in lower for w in _PIN_WORDS):
        return PinUnavailable(chain_id, code, message, endpoint=endpoint)
    return RpcError(chain_id, code, message, endpoint=endpoint)


class JsonRpcClient:
    """Throttled, retrying, failing-over JSON-RPC client for one chain's endpoints."""

    def __init__(self, chain: ChainConfig, session: aiohttp.ClientSession) -> None:
        self.chain = chain
        self._session = session
        self._ids = itertools.count(1)
        self._timeout = aiohttp.ClientTimeout(total=chain.timeout_s)
        self.endpoints = [Endpoint(url, chain) for url in chain.rpc_urls]

    @property
    def stats(self) -> dict[str, EndpointStats]:
        return {ep.url: ep.stats for ep in self.endpoints}

    @property
    def requests(self) -> int:
        return sum(ep.stats.requests for ep in self.endpoints)

    @property
    def calls(self) -> int:
        return sum(ep.stats.calls for ep in self.endpoints)

    def chunk_size(self) -> int:
        """The chunk size of the endpoint the next request would most likely go to."""
        ep = self._choose(time.monotonic())
        return ep.chunk if ep is not None else self.chain.max_calls_per_batch

    # ------------------------------------------------------------------ retrying

    async def request(self, method: str, params: list[Any]) -> Any:
        """One call, retried and failed over as the table in the module docstring says."""
        return await self.attempt(lambda ep: self.send(ep, method, params))

    async def attempt(
        self,
        op: Callable[[Endpoint], Awaitable[T]],
        *,
        n_calls: int = 1,
        deadline: float | None = None,
        verify: bool = True,
    ) -> T:
        """Run `op` on an endpoint until it succeeds, retries or the deadline run out."""
        chain = self.chain
        deadline = deadline if deadline is not None else time.monotonic() + chain.retry_budget_s
        last: ChainError | None = None
        for attempt in range(chain.retries + 1):
            ep = await self._ready(deadline, last)
            try:
                if verify and not ep.verified:
                    await self.verify(ep)
                result = await op(ep)
            except ChainError as exc:
                if not self._retried(ep, exc, attempt, n_calls):
                    raise
                last = exc
            else:
                ep.succeeded(n_calls)
                return result
            if attempt == chain.retries or time.monotonic() >= deadline:
                break
            nxt = self._choose(time.monotonic())
            if nxt is not None and nxt.cooldown_until > time.monotonic():
                # nothing healthy to fail over to: back off before trying again
                await asyncio.sleep(min(backoff(attempt), max(0.0, deadline - time.monotonic())))
        assert last is not None
        raise last

    async def _ready(self, deadline: float, last: ChainError | None) -> Endpoint:
        """The endpoint to try next, once its rate-limit back-off (if any) is over."""
        now = time.monotonic()
        ep = self._choose(now)
        if ep is None:
            raise last or NoUsableEndpoint(self.chain.chain_id, self._refusals())
        wait = ep.not_before - now
        if wait > 0:
            if now + wait > deadline:
                raise last or RateLimited(
                    self.chain.chain_id, "back-off outlasts the retry budget", endpoint=ep.url
                )
            await asyncio.sleep(wait)
        return ep

    def _retried(self, ep: Endpoint, exc: ChainError, attempt: int, n_calls: int) -> bool:
        """Learn from `exc` on `ep` (the table in the module docstring); whether `attempt`
        tries again (False: the caller raises it)."""
        if isinstance(exc, PayloadTooLarge):
            ep.shrink(exc.n_calls)
            return False
        if isinstance(exc, RequestTimeout):
            self._fault(ep)
            ep.last_error = exc
            if n_calls > 1:
                ep.shrink(n_calls)
                return False
            return True
        if isinstance(exc, RateLimited):
            ep.stats.rate_limited += 1
            delay = exc.retry_after if exc.retry_after is not None else backoff(attempt)
            ep.not_before = time.monotonic() + delay
        elif isinstance(exc, EndpointRefused):
            ep.refused = exc
        elif isinstance(exc, TransportError | PinUnavailable | HeadWentBackwards):
            self._fault(ep)
        else:
            return False
        ep.last_error = exc
        return True

    def _fault(self, ep: Endpoint) -> None:
        ep.stats.failures += 1
        ep.cooldown_until = time.monotonic() + self.chain.cooldown_s

    def _choose(self, now: float) -> Endpoint | None:
        """Config order among the healthy; else the soonest out of cool-down; else the
        soonest out of rate-limit back-off. None if every endpoint is refused."""
        usable = [ep for ep in self.endpoints if ep.refused is None]
        if not usable:
            return None
        for ep in usable:
            if ep.not_before <= now and ep.cooldown_until <= now:
                return ep
        free = [ep for ep in usable if ep.not_before <= now]
        if free:
            return min(free, key=lambda ep: ep.cooldown_until)
        return min(usable, key=lambda ep: ep.not_before)

    def _refusals(self) -> list[str]:
        """Why each endpoint was refused, by index (never its URL)."""
        out = []
        for i, ep in enumerate(self.endpoints):
            if isinstance(ep.refused, ChainIdMismatch):
                out.append(f"endpoint {i} serves chain id {ep.refused.got}")
            elif isinstance(ep.refused, BlockHashMismatch):
                out.append(f"endpoint {i} has another block {ep.refused.block}")
            elif ep.refused is not None:
                out.append(f"endpoint {i}: {ep.refused.error_code}")
        return out

    def identity_requests(self) -> list[Request]:
        """What an endpoint must answer to prove it is this chain (METHOD.md §2): its
        chain id, and the block at the configured identity height if there is one."""
        requests: list[Request] = [("eth_chainId", [])]
        identity = self.chain.identity
        if identity is not None:
            requests.append(("eth_getBlockByNumber", [hex(identity.block), False]))
        return requests

    async def verify(self, ep: Endpoint) -> None:
        """An endpoint serving another chain is refused before any number is read."""
        requests = self.identity_requests()
        if len(requests) == 1:
            replies = [await self.send(ep, *requests[0])]
        else:
            replies = await self.send_batch(ep, requests)
        self.check_identity(ep, replies)

    def check_identity(self, ep: Endpoint, replies: Sequence[Any]) -> None:
        """Check the replies to `identity_requests()`; the endpoint is verified after."""
        cid = self.chain.chain_id
        try:
            got = int(replies[0], 16)
        except (TypeError, ValueError) as exc:
            raise BadResponse(cid, f"eth_chainId answered {replies[0]!r}", endpoint=ep.url) from exc
        if got != cid:
            raise ChainIdMismatch(cid, got, endpoint=ep.url)
        identity = self.chain.identity
        if identity is not None:
            block = replies[1]
            if block is None:  # not synced that far, or pruned: cannot prove it yet
                raise BadResponse(cid, f"no block {identity.block} to check", endpoint=ep.url)
            got_hash = block.get("hash") if isinstance(block, dict) else None
            if not isinstance(got_hash, str):
                raise BadResponse(cid, f"block {identity.block} has no hash", endpoint=ep.url)
            if got_hash.lower() != identity.hash:
                raise BlockHashMismatch(
                    cid, identity.block, identity.hash, got_hash[:66], endpoint=ep.url
                )
        ep.verified = True

    # ------------------------------------------------------------------ one HTTP request

    async def send(
        self, ep: Endpoint, method: str, params: list[Any] | RawParams, n_calls: int = 1
    ) -> Any:
        """One JSON-RPC call in one HTTP request on `ep`; no retry."""
        rid = next(self._ids)
        reply = await self._post(ep, _body(rid, method, params), 1, n_calls)
        if not isinstance(reply, dict):
            raise self._bad(ep, "reply is not a JSON-RPC object")
        return self._result(ep, reply, rid, n_calls)

    async def send_data(
        self, ep: Endpoint, method: str, params: list[Any] | RawParams, n_calls: int = 1
    ) -> bytes:
        """`send` for a method whose result is hex data (eth_call): the bytes. The usual
        reply is decoded by its layout (`hex_result`); any other goes through `send`'s
        checks. A result that is not hex data is a BadResponse."""
        rid = next(self._ids)
        reply = await self._post(ep, _body(rid, method, params), 1, n_calls, data_of=rid)
        if isinstance(reply, bytes):
            return reply
        if not isinstance(reply, dict):
            raise self._bad(ep, "reply is not a JSON-RPC object")
        result = self._result(ep, reply, rid, n_calls)
        if isinstance(result, str) and result.startswith("0x"):
            try:
                return binascii.unhexlify(result[2:])
            except ValueError:
                pass
        raise self._bad(ep, f"{method} result is not hex data")

    async def send_batch(self, ep: Endpoint, requests: Sequence[Request]) -> list[Any]:
        """A JSON-RPC batch in one HTTP request on `ep`, results in request order; replies
        are matched by id, so any order is fine but a missing or unknown id is not."""
        ids = [next(self._ids) for _ in requests]
        body = [
            {"jsonrpc": "2.0", "id": rid, "method": m, "params": p}
            for rid, (m, p) in zip(ids, requests, strict=True)
        ]
        reply = await self._post(ep, body, len(body), len(body))
        if isinstance(reply, dict) and "error" in reply:  # the whole batch was refused
            raise classify(self.chain.chain_id, ep.url, reply["error"], len(body))
        if not isinstance(reply, list):
            raise self._bad(ep, "batch reply is not an array")
        by_id: dict[Any, dict[str, Any]] = {}
        for item in reply:
            if not isinstance(item, dict) or item.get("id") not in ids or item["id"] in by_id:
                raise self._bad(ep, "batch reply has an unknown or repeated id")
            by_id[item["id"]] = item
        if len(by_id) != len(ids):
            raise self._bad(ep, f"batch reply has {len(by_id)} of {len(ids)} answers")
        return [self._result(ep, by_id[rid], rid, 1) for rid in ids]

    def _result(self, ep: Endpoint, reply: dict[str, Any], rid: int, n_calls: int) -> Any:
        if "error" in reply:
            raise classify(self.chain.chain_id, ep.url, reply["error"], n_calls)
        if reply.get("id") != rid:
            raise self._bad(ep, f"reply id {reply.get('id')!r} for request {rid}")
        if "result" not in reply:
            raise self._bad(ep, "reply has neither result nor error")
        return reply["result"]

    def _bad(self, ep: Endpoint, message: str) -> BadResponse:
        return BadResponse(self.chain.chain_id, message, endpoint=ep.url)

    async def _post(
        self, ep: Endpoint, body: Any, n_rpc: int, n_calls: int, data_of: int | None = None
    ) -> Any:
        """POST `body` (bytes: already JSON) on `ep`; the JSON reply, or the error the HTTP
        exchange amounts to. With `data_of`, a reply that `hex_result` takes for that
        request id is returned as its bytes instead."""
        cid = self.chain.chain_id
        if isinstance(body, bytes):
            payload = body
        else:
            payload = json.dumps(body, separators=(",", ":")).encode()
        if len(payload) > MAX_BODY_BYTES and n_calls > 1:
            raise PayloadTooLarge(cid, n_calls, f"{len(payload)} byte body", endpoint=ep.url)
        status, retry_after, raw = await self._exchange(ep, payload, n_rpc)
        if data_of is not None and status == 200:
            data = hex_result(raw, data_of)
            if data is not None:
                return data
        try:
            reply = json.loads(raw)
        except ValueError:
            reply = None
        if status != 200:
            raise self._refusal(ep, status, reply, n_calls, retry_after)
        if reply is None:
            text = raw[:200].decode("utf-8", "replace").lower()
            if any(w in text for w in _RATE_LIMIT_WORDS):
                raise RateLimited(cid, "rate limit in a non-JSON body", endpoint=ep.url)
            raise BadResponse(cid, "response body is not JSON", endpoint=ep.url)
        return reply

    async def _exchange(
        self, ep: Endpoint, payload: bytes, n_rpc: int
    ) -> tuple[int, float | None, bytes]:
        """One HTTP request within the endpoint's throttle and concurrency bound: status,
        Retry-After and body, with transport failures mapped into the error tree."""
        cid = self.chain.chain_id
        headers = {"Content-Type": "application/json"}
        async with ep.slots, ep.throttle:
            ep.stats.requests += 1
            ep.stats.calls += n_rpc
            try:
                # aiohttp wants bodies over 1 MiB as a stream (it warns otherwise)
                data = payload if len(payload) <= 1 << 20 else io.BytesIO(payload)
                async with self._session.post(
                    ep.url, data=data, headers=headers, timeout=self._timeout
                ) as resp:
                    status = resp.status
                    retry_after = retry_after_header(resp.headers.get("Retry-After"))
                    raw = await resp.read()
            except TimeoutError as exc:
                raise RequestTimeout(
                    cid, f"no answer in {self.chain.timeout_s} s", endpoint=ep.url
                ) from exc
            except aiohttp.ClientPayloadError as exc:
                raise BadResponse(cid, f"truncated body: {exc}", endpoint=ep.url) from exc
            except aiohttp.ClientError as exc:
                raise TransportError(cid, f"{type(exc).__name__}: {exc}", endpoint=ep.url) from exc
        return status, retry_after, raw

    def _refusal(
        self, ep: Endpoint, status: int, reply: Any, n_calls: int, retry_after: float | None
    ) -> ChainError:
        """The error a non-200 answer means: a rate limit or a too-large payload if the
        status or its JSON-RPC error says so, else a transport fault."""
        cid = self.chain.chain_id
        err: ChainError | None = None
        if isinstance(reply, dict) and "error" in reply:
            err = classify(cid, ep.url, reply["error"], n_calls, retry_after)
        if status == 429:
            if isinstance(err, RateLimited):
                return err
            return RateLimited(cid, "HTTP 429", retry_after=retry_after, endpoint=ep.url)
        if status == 413:
            return PayloadTooLarge(cid, n_calls, "HTTP 413", endpoint=ep.url)
        if isinstance(err, RateLimited | PayloadTooLarge):
            return err
        return TransportError(cid, f"HTTP {status}", endpoint=ep.url)
