"""Request and response models of the watch operations (in /openapi.json)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from api.models import Address, Method, Strict, allowlist
from api.watch.rules import Condition, Thresholds
from crossmargin.core.config import Config

WATCH_ID_PATTERN = r"^[0-9a-f]{32}$"
MAX_ACCOUNTS_PER_REQUEST = 5_000
ALERT_ID_PATTERN = r"^[0-9a-f]{32}$"
AlertStatus = Literal["pending", "delivered", "dead"]


# http(s)://host[:port][/path?query#fragment]: a host name or IPv4 address (no IPv6
# literal: a bracketed host must be checked as an address, which a pattern cannot do);
# no user:password@ (it would be stored and shown back; the secret signs instead). In the
# schema, so clients (and fuzzers) see what is taken.
WEBHOOK_PATTERN = (
    r"^https?://[A-Za-z0-9_~-]+(?:\.[A-Za-z0-9_~-]+)*"
    r"(?::[0-9]{1,5})?(?:[/?#][!-~]*)?$"
)
_WEBHOOK = re.compile(WEBHOOK_PATTERN)


def webhook_url(value: str) -> str:
    """http(s), a host, no credentials (WEBHOOK_PATTERN)."""
    if _WEBHOOK.fullmatch(value) is None:
        raise ValueError("the webhook must be an http(s) URL with a host and no user:password")
    return value


# Text a database can store: PostgreSQL's text refuses NUL (a 503 otherwise); in the
# schema, so a client (and schemathesis) knows it before sending.
NO_NUL = r"^[^\x00]*$"


class WatchBody(Strict):
    """Base of the create/update bodies: the same account twice is refused."""

    @field_validator("accounts", check_fields=False)
    @classmethod
    def _distinct(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("the same account is listed twice")
        return v

    @field_validator("webhook_url", check_fields=False)
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return None if v is None else webhook_url(v)


class WatchModels:
    """Bodies built from config: the chain allowlist and the account cap."""

    def __init__(self, config: Config) -> None:
        chains = [c.name for c in config.chains] + [str(c.chain_id) for c in config.chains]
        chain = allowlist(chains, "chain")
        # a request body is at most 256 KiB (api/app.py): 5,000 addresses fit in it
        cap = min(config.watch.max_accounts, MAX_ACCOUNTS_PER_REQUEST)
        accounts_doc = f"accounts to watch (1 to {cap})"
        secret_doc = "signs every webhook (HMAC-SHA256); write-only, never shown"
        self.create: type[WatchBody] = create_model(
            "WatchCreate",
            __base__=WatchBody,
            name=(str | None, Field(None, max_length=64, pattern=NO_NUL, description="a label")),
            accounts=(
                list[Address],
                Field(
                    min_length=1,
                    max_length=cap,
                    description=accounts_doc,
                    json_schema_extra={"uniqueItems": True},
                ),
            ),
            target_chain=(chain | None, Field(None, description="default: settlement chain")),
            method=(Method | None, Field(None, description="var or es (default: config)")),
            thresholds=(Thresholds, ...),
            webhook_url=(
                str,
                Field(max_length=2000, pattern=WEBHOOK_PATTERN, description="alerts go there"),
            ),
            secret=(
                str,
                Field(min_length=16, max_length=256, pattern=NO_NUL, description=secret_doc),
            ),
        )
        self.update: type[WatchBody] = create_model(
            "WatchUpdate",
            __base__=WatchBody,
            name=(str | None, Field(None, max_length=64, pattern=NO_NUL)),
            accounts=(
                list[Address] | None,
                Field(None, min_length=1, max_length=cap, json_schema_extra={"uniqueItems": True}),
            ),
            target_chain=(chain | None, None),
            method=(Method | None, None),
            thresholds=(Thresholds | None, None),
            webhook_url=(str | None, Field(None, max_length=2000, pattern=WEBHOOK_PATTERN)),
            secret=(
                str | None,
                Field(None, min_length=16, max_length=256, pattern=NO_NUL, description=secret_doc),
            ),
        )


class Watch(BaseModel):
    """A subscription as served: never its secret."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str | None
    accounts: list[str]
    target_chain: str
    method: str
    thresholds: Thresholds
    webhook_url: str
    created_at: str
    updated_at: str


class WatchList(BaseModel):
    watches: list[Watch]


class Deleted(BaseModel):
    id: str
    deleted: bool


class Alert(BaseModel):
    """One alert and its delivery state. `payload` is the webhook body, as sent."""

    id: str
    watch_id: str
    account: str
    condition: Condition
    kind: Literal["breached", "recovered"]
    snapshot_id: str
    created_at: str
    status: AlertStatus
    attempts: int
    last_error: str | None
    delivered_at: str | None
    payload: dict[str, Any]


class AlertList(BaseModel):
    alerts: list[Alert]


class AlertQueryBase(Strict):
    pass


def alert_query() -> type[BaseModel]:
    return create_model(
        "AlertQuery",
        __base__=AlertQueryBase,
        watch_id=(str | None, Field(None, pattern=WATCH_ID_PATTERN, description="one watch")),
        status=(AlertStatus | None, Field(None, description="pending, delivered or dead")),
        limit=(int, Field(100, ge=1, le=1000, description="newest first")),
    )
