"""Typed async client of the crossmargin HTTP API (`crossmargin.client`).

    async with Client("http://127.0.0.1:8000", key=None) as api:
        served = await api.get_margin("0x...", target_chain="arbitrum", method="es")
        print(served.report.totals.free_margin_usd, served.snapshot_id)

One method per OpenAPI operation (its operationId in snake case), returning the same
pydantic models the server serialises; see `client.py`.
"""

from crossmargin.client.client import Client, Retry, Served
from crossmargin.client.errors import ApiError, BadAnswer, ClientError, RateLimited, Unreachable

__all__ = [
    "ApiError",
    "BadAnswer",
    "Client",
    "ClientError",
    "RateLimited",
    "Retry",
    "Served",
    "Unreachable",
]
