"""The `advrobust` command line: `advrobust <command> [options]`; `advrobust <command> -h` for help."""
from __future__ import annotations

import argparse
import sys


def _bench(argv):
    from advrobust.benchmark import main
    main(argv)


COMMANDS = {
    "bench": (_bench, "time the fused kernels against their pure-PyTorch twins and torch.compile"),
}


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="advrobust", description="Adversarial robustness for survey image models.")
    parser.add_argument("command", choices=sorted(COMMANDS), help="; ".join(f"{k}: {v[1]}" for k, v in COMMANDS.items()))
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        sys.exit(0 if argv else 2)
    args = parser.parse_args(argv[:1])
    COMMANDS[args.command][0](argv[1:])


if __name__ == "__main__":
    main()
