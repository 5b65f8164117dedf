"""Shared by the verified-read tests and bench/verified.py: the proof-layout tokens of
contracts/src/proof/ compiled with the pinned solcjs (offline, once per process), and
a config with every chain in verified mode."""

from __future__ import annotations

import json
import subprocess
from functools import cache
from typing import Any

from crossmargin.core.config import Config
from devnet.evm import repo_root

SOURCE = "contracts/src/proof/ProofLayouts.sol"
_COMPILE = """
const solc = require("solc");
const fs = require("fs");
const src = fs.readFileSync(process.argv[1], "utf8");
const input = {
  language: "Solidity",
  sources: { "ProofLayouts.sol": { content: src } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    outputSelection: { "*": { "*": ["evm.bytecode.object"] } },
  },
};
const out = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (out.errors || []).filter((e) => e.severity === "error");
if (errors.length) { console.error(JSON.stringify(errors)); process.exit(1); }
const code = {};
for (const [name, c] of Object.entries(out.contracts["ProofLayouts.sol"])) {
  code[name] = "0x" + c.evm.bytecode.object;
}
console.log(JSON.stringify(code));
"""


@cache
def creation_code() -> dict[str, str]:
    """Contract name -> creation bytecode of the proof-layout tokens."""
    root = repo_root()
    done = subprocess.run(
        ["node", "-e", _COMPILE, str(root / SOURCE)],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    code: dict[str, str] = json.loads(done.stdout)
    return code


def verified(config: Config, **update: Any) -> Config:
    """`config` with every chain in verified mode (METHOD.md §13)."""
    chains = [c.model_copy(update={"verification": "proof", **update}) for c in config.chains]
    return config.model_copy(update={"chains": chains})
