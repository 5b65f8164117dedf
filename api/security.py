"""API keys and per-principal token buckets.

A key is sent as `X-API-Key: <key>` (or `Authorization: Bearer <key>`). Config holds
only its sha256; the presented key's digest is compared with every configured digest
by `hmac.compare_digest`, without stopping at the first match. No key: the anonymous
principal (one bucket per client address) if `api.anonymous`, else 401. A key that
matches nothing: 403, whether or not anonymous access is on. Each key and each
anonymous address has its own bucket, so one client's flood is its own 429s and
never another client's. Buckets live in the process: N processes behind a balancer
allow N times the configured rates (README, "Running several API processes"), unless
each is given `share=N`, as `crossmargin serve --workers N` does: every bucket then
fills at rate/N up to ceil(burst/N), so the workers together never allow more than the
configured rate (a client whose connections all land on one worker gets rate/N).

A batch of n accounts costs n tokens. It is let in when the bucket holds min(n, burst)
of them, so any batch up to `api.max_batch` can pass whatever the burst; one larger
than the burst leaves the bucket in debt, and the principal's next requests wait until
it is repaid. Over time a principal gets at most `rate` accounts per second.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from api.problems import ApiProblem
from crossmargin.core.config import ApiConfig

KEY_HEADER = "X-API-Key"
MAX_ANONYMOUS_BUCKETS = 10_000


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh random key and the digest that goes into config."""
    key = "cmk_" + secrets.token_urlsafe(32)
    return key, key_digest(key)


@dataclass(frozen=True, slots=True)
class Principal:
    name: str  # the key's name, or "anonymous"
    bucket: str  # what is rate limited: "key:<name>" or "anon:<address>"


EPSILON = 1e-9  # of a token


class TokenBucket:
    """`rate` tokens per second up to `capacity`; a request takes `cost` tokens. The
    balance may go below 0 (a batch larger than the capacity): that is debt."""

    def __init__(self, rate: float, capacity: int, now: float) -> None:
        self.rate = rate
        self.capacity = float(capacity)
        self.tokens = float(capacity)
        self.updated = now

    def take(self, cost: float, now: float, paid: float = 0.0) -> float:
        """0 if granted, else seconds until the whole request, asked again (paying all
        of its cost again), would be. `paid` of the `cost` tokens were taken already; the
        request is granted when the bucket holds, with them, the cost or the whole
        capacity if that is less, and then the rest is taken, into debt if need be."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        need = min(cost, self.capacity)
        if self.tokens + paid >= need - EPSILON:  # float drift must not cost a Retry-After
            self.tokens -= cost - paid
            return 0.0
        return (need - self.tokens) / self.rate


class Gate:
    """Authentication and rate limits for the operations that need them."""

    def __init__(
        self, api: ApiConfig, clock: Callable[[], float] = time.monotonic, *, share: int = 1
    ) -> None:
        """`share`: this process is one of that many serving the same clients, each with
        rate/share and burst/share (rounded up) of every bucket."""
        self.api = api
        self._clock = clock
        self._share = share
        self._keys = [(k.name, k.sha256) for k in api.keys]
        now = clock()
        self._buckets: dict[str, TokenBucket] = {
            f"key:{k.name}": self._new_bucket(k.rate_per_s, k.burst, now) for k in api.keys
        }
        self._anonymous: OrderedDict[str, TokenBucket] = OrderedDict()

    def authenticate(self, request: web.Request) -> Principal:
        presented = request.headers.get(KEY_HEADER)
        if presented is None:
            auth = request.headers.get("Authorization", "")
            if auth[:7].lower() == "bearer ":
                presented = auth[7:].strip()
        if presented is None:
            if not self.api.anonymous:
                raise ApiProblem(
                    401,
                    f"an API key is required (header {KEY_HEADER})",
                    type_="/problems/unauthorized",
                    headers={"WWW-Authenticate": 'Bearer realm="crossmargin"'},
                )
            return Principal("anonymous", f"anon:{request.remote or 'unknown'}")
        digest = key_digest(presented)
        found: str | None = None
        for name, stored in self._keys:  # no early exit: same work whichever key matches
            if hmac.compare_digest(digest, stored):
                found = name
        if found is None:
            raise ApiProblem(403, "the API key is not valid", type_="/problems/forbidden")
        return Principal(found, f"key:{found}")

    def admit(self, principal: Principal, cost: float = 1.0, *, paid: float = 0.0) -> None:
        """Take `cost` tokens from the principal's bucket (`paid` of them were taken at
        the door), or raise 429 with Retry-After."""
        now = self._clock()
        bucket = self._bucket(principal.bucket, now)
        wait = bucket.take(cost, now, paid)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise ApiProblem(
                429,
                f"rate limit of {bucket.rate:g} requests/s (burst {bucket.capacity:g}) "
                f"exceeded; retry in {retry} s",
                type_="/problems/rate-limited",
                headers={"Retry-After": str(retry)},
            )

    def _new_bucket(self, rate: float, burst: int, now: float) -> TokenBucket:
        return TokenBucket(rate / self._share, -(-burst // self._share), now)

    def _bucket(self, name: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(name)
        if bucket is not None:
            return bucket
        bucket = self._anonymous.get(name)
        if bucket is None:
            if len(self._anonymous) >= MAX_ANONYMOUS_BUCKETS:
                self._anonymous.popitem(last=False)  # the least recently seen address
            api = self.api
            bucket = self._new_bucket(api.anonymous_rate_per_s, api.anonymous_burst, now)
            self._anonymous[name] = bucket
        else:
            self._anonymous.move_to_end(name)
        return bucket
