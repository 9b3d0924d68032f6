"""Loads the compiled extension ``advrobust._C`` (it registers the ``torch.ops.advrobust`` ops).

The package works without it (every op falls back to its pure-PyTorch twin, with a
warning at import), so a failed build is visible, not fatal.
"""
from __future__ import annotations

import warnings

import torch  # noqa: F401  (loads libc10/libtorch, which advrobust._C links against)

try:
    from advrobust import _C  # noqa: F401  (registers torch.ops.advrobust.*)
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    _C = None
    warnings.warn(
        "advrobust: the compiled extension advrobust._C could not be loaded "
        f"({exc}); the ops run on their slower pure-PyTorch twins. "
        "Rebuild with `pip install --no-build-isolation -e .`.",
        RuntimeWarning,
        stacklevel=2,
    )


def has_cpu_kernels() -> bool:
    """True when the compiled C++ kernels are loaded."""
    return _C is not None


def has_cuda_kernels() -> bool:
    """True when the extension was built with its CUDA kernels (``FORCE_CUDA=1`` or a visible GPU)."""
    return _C is not None and bool(_C.built_with_cuda())
