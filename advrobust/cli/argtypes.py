"""argparse ``type`` converters of the commands' list options (a config file's lists use them too,
:mod:`advrobust.cli.config`)."""
from __future__ import annotations

import argparse


def floats(text: str) -> list:
    """``"1,2.5"`` -> ``[1.0, 2.5]``."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def names(text: str) -> list:
    """``"fgsm, pgd"`` -> ``["fgsm", "pgd"]`` (empty items are dropped)."""
    return [item.strip() for item in text.split(",") if item.strip()]
