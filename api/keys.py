"""Make an API key: `python -m api.keys NAME [--rate R] [--burst B]`.

Prints the key once (give it to the client; it is not stored anywhere) and the
`[[api.keys]]` entry for the config file, which holds only the key's sha256.
"""

from __future__ import annotations

import argparse
import sys

from api.security import new_key


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m api.keys", description=__doc__.splitlines()[0])
    p.add_argument("name", help="the key's name (metrics and logs show it, never the key)")
    p.add_argument("--rate", type=float, default=10.0, help="requests per second")
    p.add_argument("--burst", type=int, default=20, help="bucket size")
    args = p.parse_args(argv)
    key, digest = new_key()
    print(f"key (shown once): {key}\n", file=sys.stderr)
    print(
        f'[[api.keys]]\nname = "{args.name}"\nsha256 = "{digest}"\n'
        f"rate_per_s = {args.rate}\nburst = {args.burst}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
