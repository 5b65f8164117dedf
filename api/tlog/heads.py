"""Signed tree heads (METHOD.md §10): (size, root, time) of the log, signed with Ed25519.

The signed message is fixed binary, so any language can check it:
`b"crossmargin tree head v1\\n" || uint64be(tree_size) || uint64be(timestamp_ms) || root`
(32 bytes). The key's id is the sha256 of its raw 32-byte public key. The key is a PEM
(PKCS#8) file named by `api.tlog_key`; `crossmargin up` and the devnet generate one
into their state directory. An auditor pins the public key (GET /v1/log/key) once, and
keeps tree heads: each one commits the service to every snapshot it covers.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from crossmargin.core.errors import CrossmarginError

DOMAIN = b"crossmargin tree head v1\n"


class TreeHeadError(CrossmarginError):
    """A key or a tree head that cannot be used (one line, no library internals)."""


@dataclass(frozen=True, slots=True)
class TreeHead:
    tree_size: int
    root_hash: bytes
    timestamp: int  # milliseconds since the Unix epoch

    def message(self) -> bytes:
        return DOMAIN + struct.pack(">QQ", self.tree_size, self.timestamp) + self.root_hash


@dataclass(frozen=True, slots=True)
class SignedTreeHead:
    head: TreeHead
    key_id: str
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "tree_size": self.head.tree_size,
            "root_hash": self.head.root_hash.hex(),
            "timestamp": self.head.timestamp,
            "key_id": self.key_id,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, doc: Any) -> SignedTreeHead:
        """Parse a kept tree head (the JSON of GET /v1/log/tree-head)."""
        try:
            head = TreeHead(
                _int(doc["tree_size"]), _hex(doc["root_hash"], 32), _int(doc["timestamp"])
            )
            return cls(head, str(doc["key_id"]), _hex(doc["signature"], 64))
        except (KeyError, TypeError, ValueError) as exc:
            raise TreeHeadError(f"not a signed tree head: {exc}") from exc


def _int(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 63:
        raise ValueError(f"{v!r} is not a non-negative integer")
    return v


def _hex(v: Any, size: int) -> bytes:
    b = bytes.fromhex(v)
    if len(b) != size:
        raise ValueError(f"expected {size} bytes of hex, got {len(b)}")
    return b


def key_id(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()


class Signer:
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_id = key_id(self.public_key)

    @classmethod
    def load(cls, path: str | Path) -> Signer:
        try:
            key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        except OSError as exc:
            raise TreeHeadError(
                f"cannot read the log's signing key {path}: {exc.strerror}"
            ) from exc
        except (ValueError, TypeError) as exc:
            raise TreeHeadError(f"{path} is not a PEM private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise TreeHeadError(f"{path} is not an Ed25519 key")
        return cls(key)

    def sign(self, head: TreeHead) -> SignedTreeHead:
        return SignedTreeHead(head, self.key_id, self._key.sign(head.message()))


def generate_key(path: Path) -> Path:
    """Write a new Ed25519 key to `path` (mode 0600) unless one is there: a key that
    signed tree heads is kept, so those heads stay verifiable."""
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
    return path


def load_public_key(text: str) -> bytes:
    """A pinned public key: the JSON of GET /v1/log/key, a PEM public key, or 64 hex."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise TreeHeadError("the public key is not an Ed25519 key")
            return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        if text.startswith("{"):
            text = str(json.loads(text)["public_key"])
        return _hex(text, 32)
    except (KeyError, TypeError, ValueError) as exc:
        raise TreeHeadError(f"not an Ed25519 public key: {exc}") from exc


def signature_ok(public: bytes, sth: SignedTreeHead) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(sth.signature, sth.head.message())
    except (InvalidSignature, ValueError):
        return False
    return True
