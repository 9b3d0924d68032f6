"""Which implementation an op runs: the compiled kernel of the tensor's device, or its twin.

No silent slow path: a CUDA tensor given to an op of a build without CUDA kernels runs the
pure-PyTorch twin, with a ``RuntimeWarning`` (once per process) that says how to rebuild. A
build without any kernels already warned when :mod:`advrobust._extension` was imported.
"""
from __future__ import annotations

import warnings

from torch import Tensor

from advrobust._extension import has_cpu_kernels, has_cuda_kernels

#: How to get the CUDA kernels, for the warning here and the test suite's failure message.
CUDA_REBUILD_HINT = ("rebuild advrobust with its CUDA kernels, with a CUDA-enabled torch installed: "
                     "`FORCE_CUDA=1 pip install --no-build-isolation -e .`")

_warned_cuda_twin = False


def _warn_cuda_twin_once() -> None:
    global _warned_cuda_twin
    if _warned_cuda_twin:
        return
    _warned_cuda_twin = True
    warnings.warn(
        "advrobust ops: this build of advrobust has no CUDA kernels, so ops on CUDA tensors run their "
        f"slower pure-PyTorch twins (advrobust.ops.reference); {CUDA_REBUILD_HINT}. "
        "This warning is shown once per process.",
        RuntimeWarning,
        stacklevel=4,  # the user's call of the op wrapper
    )


def use_kernels(t: Tensor) -> bool:
    """True when the compiled kernel for ``t``'s device is loaded (CPU always with the
    extension; CUDA only in a build with ``FORCE_CUDA=1`` or a visible GPU). A CUDA tensor
    without CUDA kernels returns False after warning once per process."""
    if not has_cpu_kernels():
        return False  # the import of advrobust._extension warned
    if t.device.type == "cpu":
        return True
    if t.device.type == "cuda":
        if has_cuda_kernels():
            return True
        _warn_cuda_twin_once()
    return False
