"""Command line: ``python -m sparseopt demo`` (the showcase) or ``python -m sparseopt info``."""

from __future__ import annotations

import argparse
import json
import sys

import sparseopt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sparseopt", description=sparseopt.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train an embedding model with sparse Adam and time it")
    demo.add_argument("--quick", action="store_true", help="a smaller, faster run")
    demo.add_argument("--seed", type=int, default=0)
    commands.add_parser("info", help="print the build facts as JSON")
    args = parser.parse_args(argv)
    if args.command == "info":
        print(json.dumps(sparseopt.info(), indent=2))
        return 0
    from . import demo as demo_module

    demo_module.run(quick=args.quick, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
