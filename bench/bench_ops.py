"""Kernel benchmarks from the repository: `python bench/bench_ops.py [--quick] [--no-compile]`.

Same as `advrobust bench`, with the report written to bench/RESULTS.md.
"""
import os
import sys

from advrobust.benchmark import main

if __name__ == "__main__":
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
    args = sys.argv[1:]
    main(args if "--out" in args else args + ["--out", out], prog="bench/bench_ops.py")
