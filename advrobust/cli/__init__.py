"""The ``advrobust`` command line: ``advrobust <command> [options]``; ``advrobust <command> -h`` for help.

One module of this package per command, ``advrobust/cli/<command>.py``, with the two functions

    def build_parser(prog: str) -> parser
    def run(args: argparse.Namespace, prog: str) -> None

``prog``: ``"advrobust <command>"``. The parser is an :class:`argparse.ArgumentParser` or, for the
commands that read a survey, an :class:`advrobust.cli.parser.CommandParser` (``--config``, the data
options of :mod:`advrobust.cli.data`, ``--device`` of :mod:`advrobust.cli.device`); the dispatcher
calls its ``parse_args`` on the arguments after the command's name and hands the result to ``run``.
Errors go out as ``SystemExit``: argparse's usage errors and :class:`~advrobust.cli.errors.UsageError`
(the usage and the message, exit 2), or ``sys.exit("message")`` (exit 1). Any other exception a
command raises (a bad file, a bad value, a checkpoint that does not match) becomes one line on stderr
and exit 1, naming flags, not Python arguments (:data:`advrobust.cli.data.FLAGS`); ``--debug``
anywhere on the command line shows the traceback instead. The module is imported only when its
command runs, so ``advrobust -h`` stays fast and one command's imports cost the others nothing.

Adding a command is the whole of: write its module, and add its name and one-line help to :data:`COMMANDS`.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from advrobust.cli.errors import UsageError, one_line

#: command name -> the one line ``advrobust -h`` shows for it; the code is advrobust.cli.<name>
COMMANDS = {
    "demo": "the main job: simulate surveys, train, attack, defend, write a report (--quick: 2 minutes)",
    "scan": "survey robustness scan: one Parquet row per object, resumable, sharded under torchrun",
    "train": "train a model on your survey files (defenses, resumable), by flags or a TOML --config",
    "attack": "a model under fgsm/pgd/pgd_l2/onepixel/noise on your data: report, table, adversarial images",
    "certify": "randomized-smoothing certificates (Cohen et al. 2019) per object, to CSV or Parquet",
    "bench": "benchmarks: ops (the default), attacks, defenses, incremental, readers, or all of them",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="advrobust", description="Adversarial robustness of image models on astronomical survey data.",
        epilog="commands:\n" + "\n".join(f"  {name:<10} {help_}" for name, help_ in COMMANDS.items())
        + "\n\n`advrobust <command> -h` for a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", help="one of the commands below")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (any position)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the command's options")
    return parser


def main(argv=None) -> None:
    """Entry point of the ``advrobust`` console script; ``argv`` defaults to ``sys.argv[1:]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [arg for arg in argv if arg != "--debug"]
    parser = _parser()
    if not argv:
        parser.print_help(sys.stderr)
        sys.exit(2)
    args = parser.parse_args(argv)
    if args.command not in COMMANDS:
        parser.error(f"unknown command {args.command!r}; the commands are: {', '.join(COMMANDS)}")
    prog = f"advrobust {args.command}"
    try:
        _run_command(args.command, args.args, prog)
    except KeyboardInterrupt:
        if debug:
            raise
        sys.exit(f"{prog}: interrupted")
    except Exception as err:  # noqa: BLE001 -- every failure becomes one line, unless --debug
        if debug:
            raise
        sys.exit(one_line(prog, err))


def _run_command(command: str, argv: list, prog: str) -> None:
    """Build the command's parser, parse ``argv`` and run it; a :class:`UsageError` exits 2 with the usage."""
    from advrobust.cli.data import FLAGS
    from advrobust.options import spelled_as

    module = importlib.import_module(f"advrobust.cli.{command}")
    parser = module.build_parser(prog)
    args = parser.parse_args(argv)
    try:
        with spelled_as(FLAGS):  # the library's messages name the command's flags
            module.run(args, prog)
    except UsageError as err:
        parser.error(str(err))
