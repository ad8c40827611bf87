"""Run every benchmark module in turn (``make bench``); ``python -m bench NAME`` runs one.

Each module in ``MODULES`` exposes ``run(quick: bool) -> None`` and prints its own table, with
ratios against the peers it measures in the same process.  ``--quick`` shrinks sizes for a
smoke run.
"""

from __future__ import annotations

import argparse
import importlib

MODULES = ("merkle", "entries", "index", "node", "federation", "audit")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", help="any of " + ", ".join(MODULES))
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    for name in args.names or MODULES:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"bench.{name}":
                raise
            print(f"== {name}: not written yet, skipped")
            continue
        print(f"== {name}")
        module.run(quick=args.quick)


if __name__ == "__main__":
    main()
