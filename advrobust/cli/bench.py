"""``advrobust bench [ops|attacks|defenses] [options]``: the benchmarks of :mod:`advrobust.bench`.

Without a suite name the options go to ``ops`` (``advrobust bench --quick`` is
``advrobust bench ops --quick``).
"""
from __future__ import annotations

import argparse
import importlib
import shlex

SUITES = ("ops", "attacks", "defenses", "incremental", "readers")  # modules of advrobust.bench; the first is the default


def main(argv: list, prog: str) -> None:
    parser = argparse.ArgumentParser(
        prog=prog, description="Benchmarks; results, with the machine and the command, are kept in bench/.",
        epilog=f"`{prog} [options]` runs `{prog} {SUITES[0]} [options]`; `{prog} SUITE -h` for a suite's options.")
    suites = parser.add_subparsers(dest="suite", metavar="SUITE", required=True)
    for name in SUITES:
        module = importlib.import_module(f"advrobust.bench.{name}")
        sub = suites.add_parser(name, help=module.HELP, description=module.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    if not argv or argv[0] not in (*SUITES, "-h", "--help"):
        argv = [SUITES[0], *argv]
    args = parser.parse_args(argv)
    args.run(args, command=f"{prog} {shlex.join(argv)}")
