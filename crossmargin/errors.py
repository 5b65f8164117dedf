"""One exception tree; data travels in fields, not in message strings.

CrossmarginError
├── ConfigError                 bad configuration file (message carries the path)
├── ChainError(chain_id, endpoint)   a chain could not be read
│   ├── RpcError(code)          the node answered with a JSON-RPC error
│   │   └── PinUnavailable      it cannot serve the pinned block (header not found, reorged)
│   ├── RateLimited(retry_after)  HTTP 429, -32005, or a rate limit in a 200 body
│   ├── PayloadTooLarge(n_calls)  HTTP 413, anvil's 200 + -32600 over 2 MiB, out of gas
│   ├── TransportError          connection, timeout, bad HTTP status or body
│   │   ├── RequestTimeout      no complete answer within the chain's timeout_s
│   │   └── BadResponse         an answer that is not a well-formed reply to what was sent
│   ├── ChainIdMismatch(got)    endpoint serves another chain than configured
│   └── HeadWentBackwards(seen, got)  the endpoint's head is below one already pinned
├── DecodeError                 return data that does not decode (never read as 0)
└── InputError                  a caller's bad input (address, chain, asset)
"""

from __future__ import annotations


class CrossmarginError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(CrossmarginError):
    pass


class InputError(CrossmarginError):
    pass


class DecodeError(CrossmarginError):
    pass


class ChainError(CrossmarginError):
    """`endpoint` is the URL that failed (None when no single endpoint is to blame)."""

    def __init__(self, chain_id: int, message: str, *, endpoint: str | None = None) -> None:
        super().__init__(f"chain {chain_id}: {message}")
        self.chain_id = chain_id
        self.endpoint = endpoint


class RpcError(ChainError):
    def __init__(
        self, chain_id: int, code: int, message: str, *, endpoint: str | None = None
    ) -> None:
        super().__init__(chain_id, f"rpc error {code}: {message}", endpoint=endpoint)
        self.code = code


class PinUnavailable(RpcError):
    """The endpoint cannot serve the pinned block: not (yet) known, pruned, or reorged out."""


class RateLimited(ChainError):
    """`retry_after`: seconds the endpoint asked us to wait (None if it did not say)."""

    def __init__(
        self,
        chain_id: int,
        message: str,
        *,
        retry_after: float | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(chain_id, f"rate limited: {message}", endpoint=endpoint)
        self.retry_after = retry_after


class PayloadTooLarge(ChainError):
    """A request of `n_calls` calls was too big for the endpoint: split it and resend."""

    def __init__(
        self, chain_id: int, n_calls: int, message: str, *, endpoint: str | None = None
    ) -> None:
        super().__init__(chain_id, f"{n_calls} calls too large: {message}", endpoint=endpoint)
        self.n_calls = n_calls


class TransportError(ChainError):
    pass


class RequestTimeout(TransportError):
    pass


class BadResponse(TransportError):
    pass


class ChainIdMismatch(ChainError):
    def __init__(self, chain_id: int, got: int, *, endpoint: str | None = None) -> None:
        super().__init__(chain_id, f"endpoint serves chain id {got}", endpoint=endpoint)
        self.got = got


class HeadWentBackwards(ChainError):
    """The endpoint's head (or safe/finalized block) is below one this process already saw."""

    def __init__(self, chain_id: int, seen: int, got: int, *, endpoint: str | None = None) -> None:
        super().__init__(
            chain_id, f"head went backwards: {got} after {seen} was seen", endpoint=endpoint
        )
        self.seen = seen
        self.got = got


class Refused(CrossmarginError):
    """The inputs are fine but the method's assumptions fail: no number beats a wrong one."""
