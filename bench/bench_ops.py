"""`python bench/bench_ops.py [options]` is `advrobust bench ops [options]` (as the older results name it)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from advrobust.cli import main  # noqa: E402

if __name__ == "__main__":
    main(["bench", "ops", *sys.argv[1:]])
