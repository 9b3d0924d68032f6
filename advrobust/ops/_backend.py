"""Which implementation an op runs: the compiled kernel of the tensor's device, or its twin."""
from __future__ import annotations

from torch import Tensor

from advrobust._extension import has_cpu_kernels, has_cuda_kernels


def use_kernels(t: Tensor) -> bool:
    """True when the compiled kernel for ``t``'s device is loaded (CPU always with the
    extension; CUDA only in a build with ``FORCE_CUDA=1`` or a visible GPU)."""
    return has_cpu_kernels() and (t.device.type == "cpu" or (t.device.type == "cuda" and has_cuda_kernels()))
