"""Model modes: run a model in eval mode and give every sub-module its own training flag back.

Used wherever a model is run for something other than a training step: the attacks, the
defenses' bounds and MMD measurements, evaluation and the command line.

Example:
    >>> with eval_mode(model):
    ...     logits = model(images)
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn

__all__ = ["eval_mode"]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every sub-module in eval mode, then restore each one's own training flag (also when the
    body raises)."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag
