"""`python -m devnet [--state-dir DIR] [--no-keeper] ...`"""

from __future__ import annotations

from devnet.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
