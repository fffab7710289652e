"""Command line: ``python -m sparseopt demo``, ``info``, ``--version``, ``--include-dir``,
``--cmake-dir``; with no arguments it prints its help."""

from __future__ import annotations

import argparse
import json
import sys

import sparseopt

DESCRIPTION = """\
sparseopt: fast, correct training with sparse gradients.

Row-sparse gradients (indices, values) are applied to parameter tables, in
place, by optimizers that follow torch.optim's formulas (lazy, or exact: the
dense optimizer's result at the cost of the touched rows). The kernels are a
header-only C++17/OpenMP core, usable from C++ too (see --include-dir and
--cmake-dir)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sparseopt", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"sparseopt {sparseopt.__version__}")
    parser.add_argument("--include-dir", action="store_true",
                        help="print the directory of the C++ headers (-I for a compiler)")
    parser.add_argument("--cmake-dir", action="store_true",
                        help="print the directory of sparseoptConfig.cmake (-Dsparseopt_DIR=...)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser("demo", help="train an embedding model with sparse Adam and time it")
    demo.add_argument("--quick", action="store_true", help="a smaller, faster run")
    demo.add_argument("--seed", type=int, default=0)
    commands.add_parser("info", help="print the build facts as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.include_dir:
        print(sparseopt.get_include())
        return 0
    if args.cmake_dir:
        print(sparseopt.get_cmake_dir())
        return 0
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "info":
        print(json.dumps(sparseopt.info(), indent=2))
        return 0
    from . import demo as demo_module

    demo_module.run(quick=args.quick, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
