"""How an op family registers the Python side of its ``torch.ops.advrobust`` ops, in its own
module (steps.py, de.py, mmd.py), next to its wrappers: the fake kernel (output shapes and
strides without computing, for ``torch.compile``, fake tensors and ``torch.library.opcheck``)
and, where the op is differentiable, its autograd formula.

Both helpers do nothing when the compiled extension is missing (the op does not exist then;
the wrappers run the pure-PyTorch twins and :mod:`advrobust._extension` has warned).
"""
from __future__ import annotations

from typing import Callable

import torch

from advrobust._extension import has_cpu_kernels


def register_fake(op: str) -> Callable:
    """Decorator: ``fn`` becomes the fake kernel of ``torch.ops.advrobust.<op>``; returns ``fn``."""
    def register(fn: Callable) -> Callable:
        if has_cpu_kernels():
            torch.library.register_fake(f"advrobust::{op}")(fn)
        return fn
    return register


def register_autograd(op: str, backward: Callable, *, setup_context: Callable) -> None:
    """``torch.library.register_autograd`` of ``torch.ops.advrobust.<op>``."""
    if has_cpu_kernels():
        torch.library.register_autograd(f"advrobust::{op}", backward, setup_context=setup_context)
