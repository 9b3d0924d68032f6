"""Builds advrobust._C: the CPU kernels always, the CUDA kernels when a GPU is visible or
FORCE_CUDA=1 (architectures from TORCH_CUDA_ARCH_LIST; unset: the visible GPU's, or
build_config.DEFAULT_ARCH_LIST without one). Compiler flags: build_config.py as well.

Install with the torch you already have:  pip install --no-build-isolation -e .
"""
import glob
import os
import sys

from setuptools import find_packages, setup
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension, CUDA_HOME
import torch

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, ROOT)  # pip's build backend runs this file without its folder on sys.path
import build_config  # noqa: E402


def _want_cuda() -> bool:
    forced = os.environ.get("FORCE_CUDA", "0") == "1"
    return forced or (torch.cuda.is_available() and CUDA_HOME is not None)


def _extension():
    cpu_sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    cxx = build_config.CXX_FLAGS  # torch adds its C++ standard (C++20 for 2.13)
    if _want_cuda():
        arch = build_config.cuda_arch_list(os.environ.get("TORCH_CUDA_ARCH_LIST"), torch.cuda.is_available())
        if arch is not None:
            os.environ["TORCH_CUDA_ARCH_LIST"] = arch
        sources = cpu_sources + sorted(glob.glob("csrc/cuda/*.cpp") + glob.glob("csrc/cuda/*.cu"))
        print(f"advrobust: building CPU + CUDA kernels for sm {arch or 'of the visible GPU'} "
              f"({len(sources)} sources)")
        return CUDAExtension(
            "advrobust._C", sources,
            define_macros=[("ADVROBUST_WITH_CUDA", None)],
            extra_compile_args={"cxx": cxx, "nvcc": build_config.NVCC_FLAGS},
            extra_link_args=build_config.LINK_FLAGS,
        )
    print(f"advrobust: building CPU kernels only ({len(cpu_sources)} sources); "
          "set FORCE_CUDA=1 with a CUDA torch to add the CUDA kernels")
    return CppExtension("advrobust._C", cpu_sources, extra_compile_args={"cxx": cxx},
                        extra_link_args=build_config.LINK_FLAGS)


setup(
    name="advrobust",
    version="0.1.0",
    description="Adversarial robustness of image models on astronomical survey data, with fused C++/CUDA kernels",
    packages=find_packages(include=["advrobust", "advrobust.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        "scipy",
        "numpy",
        "galsim",
        "safetensors",
        "h5py",
        "astropy",
        "pandas",
        "pyarrow",
        "tqdm",
        "matplotlib",
        "scikit-learn",  # Isomap (advrobust.plots); pulls numpy, scipy, joblib, threadpoolctl, no torch
    ],
    # torchattacks (benchmark peer only) is not an extra: its dependencies pull torchvision and
    # another torch. Install it by hand with `pip install --no-deps torchattacks`.
    extras_require={
        # everything the test suite needs: pytest-benchmark (tests/test_bench_suite.py runs a bench
        # case), lsdb (HATS output), qp-prob (qp files), properscoring (the tests' independent CRPS)
        "test": ["pytest", "pytest-benchmark>=4", "lsdb", "qp-prob", "properscoring"],
        # pytest-benchmark pulls pytest and py-cpuinfo only, no torch
        "bench": ["pytest", "pytest-benchmark>=4"],
        "hats": ["lsdb"],  # HATS catalog output of the scan (lsdb pulls hats, dask, nested-pandas)
        # qp files of binned p.d.f.s (advrobust.data.write_qp); pulls tables-io, tables, blosc2, numexpr
        "qp": ["qp-prob"],
    },
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    entry_points={"console_scripts": ["advrobust=advrobust.cli:main"]},
)
