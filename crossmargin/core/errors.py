"""One exception tree; data travels in fields, not in message strings.

CrossmarginError
├── ConfigError                 bad configuration file (message carries the path)
├── ChainError(chain_id, endpoint)   a chain could not be read          chain_unreadable
│   ├── RpcError(code)          the node answered with a JSON-RPC error    node_error
│   │   └── PinUnavailable      it cannot serve the pinned block (header   block_unavailable
│   │                           not found, reorged)
│   ├── RateLimited(retry_after)  HTTP 429, -32005, or a rate limit in a   rate_limited
│   │                           200 body
│   ├── PayloadTooLarge(n_calls)  HTTP 413, anvil's 200 + -32600 over      request_too_large
│   │                           2 MiB, out of gas
│   ├── TransportError          connection, bad HTTP status                node_unreachable
│   │   ├── RequestTimeout      no complete answer within timeout_s        node_timeout
│   │   └── BadResponse         not a well-formed reply to what was sent   bad_response
│   ├── EndpointRefused         the endpoint does not prove it is this chain (METHOD §2)
│   │   ├── ChainIdMismatch(got)  its eth_chainId is another chain's       wrong_chain_id
│   │   └── BlockHashMismatch(block, got)  its block at the configured     wrong_chain_state
│   │                           height is not the configured one
│   ├── NoUsableEndpoint(reasons)  every endpoint was refused              no_usable_endpoint
│   └── HeadWentBackwards(seen, got)  the endpoint's head is below one     head_behind
│                               already pinned
├── DecodeError                 return data that does not decode (never    undecodable
│                               read as 0)
├── SnapshotError               a stored document that does not decode into engine
│                               inputs (METHOD §10)
├── InputError                  a caller's bad input (address, chain, asset)
│   └── InputConflict           the request contradicts itself (a chain    conflict
│                               given two values, addresses of an account
│                               not asked about)
└── AsOfUnavailable(chain)      a past time (METHOD §15) this deployment   as_of_unavailable
    ├── AsOfInFuture            cannot answer: after the chain's last      as_of_in_future
    │                           final block's time, or a block not final
    ├── BeforeGenesis           before the chain's first block             before_genesis
    └── StateUnavailable        the node has the block but not its state   state_unavailable
                                (not an archive node, history pruned)

The right-hand column is each class's `error_code`. A chain error has two faces:
`str(exc)` keeps what happened in detail (the library's or the node's words) for the
log; `exc.public(chain_name)` is `"<error_code>: <sentence>"`, built from the class and
its fields only, never from a node's or a library's text, so it names no URL, address,
port or Python type. Only the public form leaves the process (reports, snapshots,
/v1/health).
"""

from __future__ import annotations


class CrossmarginError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(CrossmarginError):
    pass


class InputError(CrossmarginError):
    pass


class InputConflict(InputError):
    """Well-formed input that contradicts itself: answered 409, not 400 (the shape is
    right, the combination is not)."""


class DecodeError(CrossmarginError):
    error_code = "undecodable"

    def sentence(self, chain: str) -> str:
        return f"a reply from chain {chain} does not decode"

    def public(self, chain: str) -> str:
        return f"{self.error_code}: {self.sentence(chain)}"


class ChainError(CrossmarginError):
    """`endpoint` is the URL that failed (None when no single endpoint is to blame); it
    and `message` are for the log. `error_code` and `sentence` are the public form."""

    error_code = "chain_unreadable"

    def __init__(self, chain_id: int, message: str, *, endpoint: str | None = None) -> None:
        super().__init__(f"chain {chain_id}: {message}")
        self.chain_id = chain_id
        self.endpoint = endpoint

    def sentence(self, chain: str) -> str:
        """What happened, for anyone to read: from the class and its fields only."""
        return f"chain {chain} could not be read"

    def public(self, chain: str) -> str:
        """`error_code: sentence`, the form reports, snapshots and health carry."""
        return f"{self.error_code}: {self.sentence(chain)}"


class RpcError(ChainError):
    def __init__(
        self, chain_id: int, code: int, message: str, *, endpoint: str | None = None
    ) -> None:
        super().__init__(chain_id, f"rpc error {code}: {message}", endpoint=endpoint)
        self.code = code

    error_code = "node_error"

    def sentence(self, chain: str) -> str:
        # The JSON-RPC code only: a node's message is its own text, not ours to repeat.
        return f"an endpoint of chain {chain} answered with JSON-RPC error {self.code}"


class PinUnavailable(RpcError):
    """The endpoint cannot serve the pinned block: not (yet) known, pruned, or reorged out."""

    error_code = "block_unavailable"

    def sentence(self, chain: str) -> str:
        return f"the endpoints of chain {chain} cannot serve the pinned block"


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

    error_code = "rate_limited"

    def sentence(self, chain: str) -> str:
        return f"the endpoints of chain {chain} are rate-limiting this service"


class PayloadTooLarge(ChainError):
    """A request of `n_calls` calls was too big for the endpoint: split it and resend."""

    def __init__(
        self, chain_id: int, n_calls: int, message: str, *, endpoint: str | None = None
    ) -> None:
        super().__init__(chain_id, f"{n_calls} calls too large: {message}", endpoint=endpoint)
        self.n_calls = n_calls

    error_code = "request_too_large"

    def sentence(self, chain: str) -> str:
        return f"the endpoints of chain {chain} refused a request as too large"


class TransportError(ChainError):
    error_code = "node_unreachable"

    def sentence(self, chain: str) -> str:
        return f"no endpoint of chain {chain} answered"


class RequestTimeout(TransportError):
    error_code = "node_timeout"

    def sentence(self, chain: str) -> str:
        return f"no endpoint of chain {chain} answered in time"


class BadResponse(TransportError):
    error_code = "bad_response"

    def sentence(self, chain: str) -> str:
        return f"an endpoint of chain {chain} sent a malformed answer"


class EndpointRefused(ChainError):
    """The endpoint failed to prove it serves the configured chain: never used again."""

    error_code = "endpoint_refused"


class ChainIdMismatch(EndpointRefused):
    def __init__(self, chain_id: int, got: int, *, endpoint: str | None = None) -> None:
        super().__init__(chain_id, f"endpoint serves chain id {got}", endpoint=endpoint)
        self.got = got

    error_code = "wrong_chain_id"

    def sentence(self, chain: str) -> str:
        return f"an endpoint of chain {chain} serves chain id {self.got}"


class BlockHashMismatch(EndpointRefused):
    """Same chain id, other state: the endpoint's block `block` has hash `got`, not the
    configured one (a fork, another devnet, a misrouted URL)."""

    def __init__(
        self, chain_id: int, block: int, expected: str, got: str, *, endpoint: str | None = None
    ) -> None:
        super().__init__(
            chain_id, f"block {block} is {got}, configured {expected}", endpoint=endpoint
        )
        self.block = block
        self.expected = expected
        self.got = got

    error_code = "wrong_chain_state"

    def sentence(self, chain: str) -> str:
        return (
            f"an endpoint of chain {chain} has another block {self.block} than configured "
            "(same chain id, different chain)"
        )


class NoUsableEndpoint(ChainError):
    """Every endpoint of the chain has been refused; `reasons`: one public phrase each."""

    def __init__(self, chain_id: int, reasons: list[str]) -> None:
        super().__init__(chain_id, "no usable endpoint: " + "; ".join(reasons))
        self.reasons = reasons

    error_code = "no_usable_endpoint"

    def sentence(self, chain: str) -> str:
        return f"every endpoint of chain {chain} was refused: " + "; ".join(self.reasons)


class HeadWentBackwards(ChainError):
    """The endpoint's head (or safe/finalized block) is below one this process already saw."""

    def __init__(self, chain_id: int, seen: int, got: int, *, endpoint: str | None = None) -> None:
        super().__init__(
            chain_id, f"head went backwards: {got} after {seen} was seen", endpoint=endpoint
        )
        self.seen = seen
        self.got = got

    error_code = "head_behind"

    def sentence(self, chain: str) -> str:
        return f"the endpoints of chain {chain} are behind block {self.seen}, already pinned"


class SnapshotError(CrossmarginError):
    """A stored document that does not decode into engine inputs."""


class Refused(CrossmarginError):
    """The inputs are fine but the method's assumptions fail: no number beats a wrong one."""


class AsOfUnavailable(CrossmarginError):
    """A request about a past time (METHOD.md §15) that cannot be answered as asked:
    the whole request is refused (never a report mixing old and new state). `str()` is
    the public sentence: it names the chain and the time or block, nothing of a node."""

    error_code = "as_of_unavailable"

    def __init__(self, chain: str, message: str) -> None:
        super().__init__(message)
        self.chain = chain


class AsOfInFuture(AsOfUnavailable):
    error_code = "as_of_in_future"


class BeforeGenesis(AsOfUnavailable):
    error_code = "before_genesis"


class StateUnavailable(AsOfUnavailable):
    error_code = "state_unavailable"
