"""Schemathesis hooks (SCHEMATHESIS_HOOKS=api_st_hooks): values for the `eip55-address`
format the API's schema declares.

JSON Schema cannot express an EIP-55 checksum, so an address in the schema is either
one case throughout (a pattern) or mixed case in the `eip55-address` format; this
teaches the fuzzer that format, as Schemathesis documents for custom formats. It draws
the devnet's demo accounts (CROSSMARGIN_ST_ACCOUNTS) and random checksummed addresses;
the pattern arm gives all-lower and all-upper ones, and negative tests still break both.
"""

from __future__ import annotations

import os

import schemathesis
from eth_utils.address import to_checksum_address
from hypothesis import strategies as st

DEMO = [a for a in os.environ.get("CROSSMARGIN_ST_ACCOUNTS", "").split(",") if a]
RANDOM = st.binary(min_size=20, max_size=20).map(lambda b: to_checksum_address(b))
ADDRESS = st.sampled_from(DEMO) | RANDOM if DEMO else RANDOM

schemathesis.openapi.format("eip55-address", ADDRESS)
