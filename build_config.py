"""Compiler flags and GPU architectures of advrobust._C, in one place: setup.py builds with
them, .ci/cuda_check.sh and CMakeLists.txt compile (and the check links) with the same ones.

    python build_config.py cxx|nvcc|link|arch|cmake-arch    prints that setting, one item a line

(arch: the architectures built without a visible GPU, as TORCH_CUDA_ARCH_LIST;
cmake-arch: the same list as CMake's CUDA_ARCHITECTURES). Plain Python, no torch import.
"""
from __future__ import annotations

import sys

# -ffp-contract=off: a + b*c stays two roundings. Otherwise g++ fuses it into an FMA
# wherever the target has one (aarch64 always, x86-64 with -mfma), and de_trial_gene's
# a + F*(b - c) then differs in the last bit from the GPU (de.cu evaluates it with the
# non-contractible __f*_rn intrinsics) and from the eager twin.
CXX_FLAGS = ["-O3", "-fopenmp", "-fopenmp-simd", "-ffp-contract=off"]
# No --use_fast_math: its flush-to-zero makes sign(1e-40) 0 on the GPU but not on the CPU,
# and its approximate float division and square root differ from the CPU's. The one fast
# intrinsic used on purpose (__expf in exp_nonpositive) is written out in the source.
NVCC_FLAGS = ["-O3"]
LINK_FLAGS = ["-fopenmp"]
# Without a visible GPU (FORCE_CUDA=1): SASS for sm_80 and sm_90, plus sm_90 PTX that the
# driver compiles for newer GPUs.
DEFAULT_ARCH_LIST = "8.0;9.0+PTX"


def cuda_arch_list(env_value: str | None, gpu_visible: bool) -> str | None:
    """The TORCH_CUDA_ARCH_LIST to build with: the user's when set; None when a GPU is visible,
    so that torch.utils.cpp_extension builds for that GPU; DEFAULT_ARCH_LIST otherwise. An
    empty value counts as unset, as torch reads it."""
    if env_value:
        return env_value
    return None if gpu_visible else DEFAULT_ARCH_LIST


def cmake_architectures(arch_list: str) -> list[str]:
    """A TORCH_CUDA_ARCH_LIST ("8.0;9.0+PTX") as CMake CUDA_ARCHITECTURES (80-real, 90):
    "-real" is SASS only, a bare number SASS plus PTX."""
    out = []
    for arch in arch_list.replace(" ", ";").split(";"):
        if arch:
            number = arch.removesuffix("+PTX").replace(".", "")
            out.append(number if arch.endswith("+PTX") else f"{number}-real")
    return out


_SETTINGS = {
    "cxx": lambda: CXX_FLAGS,
    "nvcc": lambda: NVCC_FLAGS,
    "link": lambda: LINK_FLAGS,
    "arch": lambda: [DEFAULT_ARCH_LIST],
    "cmake-arch": lambda: cmake_architectures(DEFAULT_ARCH_LIST),
}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in _SETTINGS:
        sys.exit(f"usage: python build_config.py {'|'.join(_SETTINGS)}")
    print("\n".join(_SETTINGS[sys.argv[1]]()))
