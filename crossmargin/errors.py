"""One exception tree; data travels in fields, not in message strings.

CrossmarginError
├── ConfigError                 bad configuration file (message carries the path)
├── ChainError(chain_id)        a chain could not be read
│   ├── RpcError(code)          the node answered with a JSON-RPC error
│   ├── TransportError          connection, timeout, bad HTTP status or body
│   └── ChainIdMismatch         endpoint serves another chain than configured
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
    def __init__(self, chain_id: int, message: str) -> None:
        super().__init__(f"chain {chain_id}: {message}")
        self.chain_id = chain_id


class RpcError(ChainError):
    def __init__(self, chain_id: int, code: int, message: str) -> None:
        super().__init__(chain_id, f"rpc error {code}: {message}")
        self.code = code


class TransportError(ChainError):
    pass


class ChainIdMismatch(ChainError):
    def __init__(self, chain_id: int, got: int) -> None:
        super().__init__(chain_id, f"endpoint serves chain id {got}")
        self.got = got


class Refused(CrossmarginError):
    """The inputs are fine but the method's assumptions fail: no number beats a wrong one."""
