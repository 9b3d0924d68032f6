"""``advrobust bench [ops|attacks|defenses|incremental|readers|certify|all] [options]``: the benchmarks of
:mod:`advrobust.bench`.

Without a suite name the options go to ``ops`` (``advrobust bench --quick`` is
``advrobust bench ops --quick``). ``all`` runs every suite in turn, each rewriting its own
``bench/RESULTS*.md``, with ``--quick`` and ``--device`` passed on; a suite that fails is reported and
the others still run (exit 1 at the end).
"""
from __future__ import annotations

import argparse
import importlib
import shlex
import sys

from advrobust.cli.errors import flat

#: modules of advrobust.bench; the first is the default
SUITES = ("ops", "attacks", "defenses", "incremental", "readers", "certify")


class _BenchParser(argparse.ArgumentParser):
    """The bench parser: without a suite name the arguments go to the first suite; ``args.argv``
    keeps the arguments as parsed (for the ``command`` line of the report)."""

    def parse_args(self, argv=None, namespace=None):
        argv = list(argv or [])
        if not argv or argv[0] not in (*SUITES, "all", "-h", "--help"):
            argv = [SUITES[0], *argv]
        args = super().parse_args(argv, namespace)
        args.argv = argv
        return args


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = _BenchParser(
        prog=prog, description="Benchmarks; results, with the machine and the command, are kept in bench/.",
        epilog=f"`{prog} [options]` runs `{prog} {SUITES[0]} [options]`; `{prog} SUITE -h` for a suite's options.")
    suites = parser.add_subparsers(dest="suite", metavar="SUITE", required=True,
                                   parser_class=argparse.ArgumentParser)
    for name in SUITES:
        module = importlib.import_module(f"advrobust.bench.{name}")
        sub = suites.add_parser(name, help=module.HELP, description=module.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    every = suites.add_parser("all", help=f"every suite in turn ({', '.join(SUITES)}), each with its defaults",
                              description="Run every suite in turn; each rewrites its own bench/RESULTS*.md.")
    every.add_argument("--quick", action="store_true", help="small sizes only (passed to every suite)")
    every.add_argument("--device", help="cpu or cuda (passed to every suite; default: each suite's)")
    return parser


def run(args: argparse.Namespace, prog: str) -> None:
    if args.suite != "all":
        args.run(args, command=f"{prog} {shlex.join(args.argv)}")
        return
    forwarded = (["--quick"] if args.quick else []) + (["--device", args.device] if args.device else [])
    parser, failed = build_parser(prog), []
    for name in SUITES:
        suite_argv = [name, *forwarded]
        print(f"== {prog} {shlex.join(suite_argv)}", flush=True)
        suite_args = parser.parse_args(suite_argv)
        try:
            suite_args.run(suite_args, command=f"{prog} {shlex.join(suite_argv)}")
        except (Exception, SystemExit) as err:  # noqa: BLE001 -- one suite's failure does not stop the others
            print(f"{prog}: suite {name} failed: {flat(err)}", file=sys.stderr, flush=True)
            failed.append(name)
    if failed:
        sys.exit(f"{prog} all: {len(failed)} suite(s) failed: {', '.join(failed)}")
