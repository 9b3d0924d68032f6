"""advrobust: adversarial robustness of image models on astronomical survey data.

Fused C++/CUDA kernels bound as PyTorch operators (:mod:`advrobust.ops`), attacks
(:mod:`advrobust.attacks`), the papers' models (:mod:`advrobust.models`), a GalSim
survey simulator and loaders (:mod:`advrobust.data`) and metrics (:mod:`advrobust.metrics`).
"""
from advrobust._extension import has_cpu_kernels, has_cuda_kernels

__version__ = "0.1.0"
__all__ = ["has_cpu_kernels", "has_cuda_kernels", "__version__"]
