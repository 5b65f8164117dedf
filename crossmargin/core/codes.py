"""Every warning code, position and chain status, feed-reading reason and error code the
service reports: one enumeration, each with the one line that says what it means.

A code is a stable string clients match on; its meaning is documented in docs/codes.md,
which is generated from this table (`markdown_table`) and checked against it by a test.
A value may serve several uses (`chain_unavailable` is a feed reason and a warning);
`USES` says which.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Code(StrEnum):
    # report and chain status
    OK = "ok"
    PARTIAL = "partial"
    # position status (§2-§4)
    ERROR = "error"
    UNAVAILABLE = "unavailable"
    UNPRICED = "unpriced"
    IMPLAUSIBLE = "implausible"
    UNVERIFIED = "unverified"
    NOT_COLLATERAL = "not_collateral"
    # warnings
    CORRELATION_REPAIRED = "correlation_repaired"
    PRICE_DEVIATION = "price_deviation"
    CHAIN_UNAVAILABLE = "chain_unavailable"
    READ_ERROR = "read_error"
    DECIMALS_UNVERIFIED = "decimals_unverified"
    TIME_SKEW = "time_skew"
    DEBT_UNKNOWN = "debt_unknown"
    CAPACITY_ZERO = "capacity_zero"
    UNLISTED_DEBT = "unlisted_debt"
    LOCAL_LIQUIDATION_RISK = "local_liquidation_risk"
    PROTOCOL_UNREADABLE = "protocol_unreadable"
    ADDRESS_KIND_DIFFERS = "address_kind_differs"
    # feed-reading reasons (§3), also warning codes
    STALE = "stale"
    NON_POSITIVE = "non_positive"
    OUT_OF_BOUNDS = "out_of_bounds"
    INCOMPLETE_ROUND = "incomplete_round"
    SEQUENCER_DOWN = "sequencer_down"
    SEQUENCER_GRACE = "sequencer_grace"
    SEQUENCER_UNKNOWN = "sequencer_unknown"
    DECIMALS_MISMATCH = "decimals_mismatch"
    WIDE_CONFIDENCE = "wide_confidence"
    FUTURE_TIMESTAMP = "future_timestamp"
    ZERO_ROUND = "zero_round"
    UNREADABLE = "unreadable"
    # chain error codes (crossmargin/core/errors.py `error_code`)
    UNDECODABLE = "undecodable"
    CHAIN_UNREADABLE = "chain_unreadable"
    NODE_ERROR = "node_error"
    BLOCK_UNAVAILABLE = "block_unavailable"
    RATE_LIMITED = "rate_limited"
    REQUEST_TOO_LARGE = "request_too_large"
    NODE_UNREACHABLE = "node_unreachable"
    NODE_TIMEOUT = "node_timeout"
    BAD_RESPONSE = "bad_response"
    ENDPOINT_REFUSED = "endpoint_refused"
    WRONG_CHAIN_ID = "wrong_chain_id"
    WRONG_CHAIN_STATE = "wrong_chain_state"
    NO_USABLE_ENDPOINT = "no_usable_endpoint"
    HEAD_BEHIND = "head_behind"
    # as of a past time (§15): problem codes (crossmargin/core/errors.py AsOfUnavailable)
    AS_OF_UNAVAILABLE = "as_of_unavailable"
    AS_OF_IN_FUTURE = "as_of_in_future"
    BEFORE_GENESIS = "before_genesis"
    STATE_UNAVAILABLE = "state_unavailable"
    # health (api/handlers.py)
    NO_ANSWER_YET = "no_answer_yet"
    STORE_TIMEOUT = "store_timeout"
    STORE_NOT_WRITABLE = "store_not_writable"


STATUS, POSITION, WARNING, FEED, CHAIN_ERROR, HEALTH, NOTE, PROBLEM = (
    "status",
    "position status",
    "warning",
    "feed reason",
    "chain error",
    "health",
    "chain note",
    "problem",
)

# code -> (uses, meaning)
USES: Final[dict[Code, tuple[tuple[str, ...], str]]] = {
    Code.OK: ((STATUS, POSITION), "computed from everything configured (report, chain, position)"),
    Code.PARTIAL: ((STATUS,), "a chain could not be read or debt cannot be valued (§2, §4)"),
    Code.ERROR: (
        (POSITION,),
        "the balance could not be read; it counts 0 as collateral",
    ),
    Code.UNAVAILABLE: ((STATUS, POSITION), "the chain could not be read at all (§2); valued 0"),
    Code.UNPRICED: ((POSITION, WARNING), "no valid price reading for the asset (§3); counts 0"),
    Code.IMPLAUSIBLE: (
        (POSITION, WARNING),
        "balance above totalSupply() or above max_position_usd (§4): collateral counts 0",
    ),
    Code.UNVERIFIED: (
        (POSITION, WARNING),
        "verified mode: no proof establishes the balance read (§13); collateral counts 0, "
        "debt the larger of the values read and proven",
    ),
    Code.NOT_COLLATERAL: (
        (POSITION, WARNING),
        "a protocol supply the account does not use as collateral there (§12): counts 0",
    ),
    Code.CORRELATION_REPAIRED: ((WARNING,), "rho was not PSD; negative eigenvalues clipped (§6)"),
    Code.PRICE_DEVIATION: ((WARNING,), "an asset's valid sources disagree beyond max_deviation"),
    Code.CHAIN_UNAVAILABLE: ((WARNING, FEED), "a chain's reads failed after retries (§2)"),
    Code.READ_ERROR: ((WARNING,), "one balance could not be read on an otherwise readable chain"),
    Code.DECIMALS_UNVERIFIED: ((WARNING,), "no decimals() on chain: config's decimals used"),
    Code.TIME_SKEW: ((WARNING,), "pinned blocks' timestamps differ by more than max_time_skew"),
    Code.DEBT_UNKNOWN: ((WARNING,), "debt cannot be valued (§4): debt-dependent figures null"),
    Code.CAPACITY_ZERO: ((WARNING,), "borrowing capacity is 0 because debt cannot be valued"),
    Code.UNLISTED_DEBT: (
        (WARNING,),
        "a protocol reports more debt than its configured representations hold (§12)",
    ),
    Code.LOCAL_LIQUIDATION_RISK: (
        (WARNING,),
        "a protocol account's own health factor is below local_health_warn (§12)",
    ),
    Code.PROTOCOL_UNREADABLE: (
        (WARNING,),
        "a protocol's own account figures could not be read: its debt is unchecked (§12)",
    ),
    Code.ADDRESS_KIND_DIFFERS: (
        (NOTE,),
        "the account's address is a contract on this chain and not on another, or the "
        "reverse (§1); read as configured",
    ),
    Code.STALE: ((FEED, WARNING), "updatedAt older than the feed's heartbeat at the pin (§3.2)"),
    Code.NON_POSITIVE: ((FEED, WARNING), "answer <= 0 (§3.1)"),
    Code.OUT_OF_BOUNDS: ((FEED, WARNING), "answer outside [min_answer, max_answer] (§3.1)"),
    Code.INCOMPLETE_ROUND: ((FEED, WARNING), "answeredInRound < roundId (§3.3)"),
    Code.SEQUENCER_DOWN: ((FEED, WARNING), "the L2 sequencer uptime feed says down (§3.4)"),
    Code.SEQUENCER_GRACE: ((FEED, WARNING), "the sequencer is up but within its grace (§3.4)"),
    Code.SEQUENCER_UNKNOWN: (
        (FEED, WARNING),
        "uptime feed unreadable or without a round: counts as down",
    ),
    Code.DECIMALS_MISMATCH: ((FEED, WARNING), "the feed's decimals() differ from config"),
    Code.WIDE_CONFIDENCE: ((FEED, WARNING), "a Pyth confidence interval too wide to use"),
    Code.FUTURE_TIMESTAMP: ((FEED, WARNING), "updatedAt beyond the pin + future_tolerance (§3.5)"),
    Code.ZERO_ROUND: ((FEED, WARNING), "roundId or updatedAt is 0 (§3.6)"),
    Code.UNREADABLE: ((FEED, WARNING), "the feed call reverted or returned undecodable data"),
    Code.UNDECODABLE: ((CHAIN_ERROR,), "a node's answer could not be decoded"),
    Code.CHAIN_UNREADABLE: ((CHAIN_ERROR,), "the chain could not be read (base of chain errors)"),
    Code.NODE_ERROR: ((CHAIN_ERROR,), "the node answered with a JSON-RPC error"),
    Code.BLOCK_UNAVAILABLE: ((CHAIN_ERROR,), "the node does not have the pinned block's state"),
    Code.RATE_LIMITED: ((CHAIN_ERROR,), "the node rate-limited us (retried after its delay)"),
    Code.REQUEST_TOO_LARGE: ((CHAIN_ERROR,), "the node refused a batch as too large"),
    Code.NODE_UNREACHABLE: ((CHAIN_ERROR,), "no connection to the endpoint"),
    Code.NODE_TIMEOUT: ((CHAIN_ERROR,), "the endpoint did not answer in time"),
    Code.BAD_RESPONSE: ((CHAIN_ERROR,), "the endpoint's answer was not valid JSON-RPC"),
    Code.ENDPOINT_REFUSED: ((CHAIN_ERROR,), "the endpoint failed the chain identity check (§2)"),
    Code.WRONG_CHAIN_ID: ((CHAIN_ERROR,), "eth_chainId differs from config (§2)"),
    Code.WRONG_CHAIN_STATE: ((CHAIN_ERROR,), "the block hash at the check height differs (§2)"),
    Code.NO_USABLE_ENDPOINT: ((CHAIN_ERROR,), "every endpoint of the chain is refused or down"),
    Code.HEAD_BEHIND: ((CHAIN_ERROR,), "the endpoints' head went below a block already pinned"),
    Code.AS_OF_UNAVAILABLE: ((PROBLEM,), "a request about a past time cannot be answered (§15)"),
    Code.AS_OF_IN_FUTURE: (
        (PROBLEM, CHAIN_ERROR),
        "the time asked is after now, or a block asked is not final yet (§15)",
    ),
    Code.BEFORE_GENESIS: (
        (PROBLEM, CHAIN_ERROR),
        "the time asked is before a chain's first block (§15): that chain is unavailable; "
        "a problem when it is so for every chain",
    ),
    Code.STATE_UNAVAILABLE: (
        (PROBLEM,),
        "the node cannot serve the state at the past block asked (not an archive node)",
    ),
    Code.NO_ANSWER_YET: ((HEALTH,), "the chain has not answered yet since start-up"),
    Code.STORE_TIMEOUT: ((HEALTH,), "the snapshot store did not answer its probe in time"),
    Code.STORE_NOT_WRITABLE: ((HEALTH,), "the snapshot store refused its probe write"),
}


def markdown_table() -> str:
    """docs/codes.md's table: code, uses, meaning, in enumeration order."""
    rows = ["| code | used as | meaning |", "|---|---|---|"]
    rows += [f"| `{c.value}` | {', '.join(u)} | {m} |" for c, (u, m) in USES.items()]
    return "\n".join(rows) + "\n"
