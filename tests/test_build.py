"""Build configuration (build_config.py, read by setup.py, CMakeLists.txt and .ci/cuda_check.sh)
and precision settings the kernels must not depend on. Nothing here compiles."""
import os
import subprocess
import sys

import pytest
import torch

import advrobust

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import build_config  # noqa: E402

OPS = torch.ops.advrobust


def _read(path: str) -> str:
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


# ------------------------------------------------------------------ architectures
def test_arch_default_without_gpu_is_sm80_sm90_with_ptx():
    assert build_config.cuda_arch_list(None, gpu_visible=False) == "8.0;9.0+PTX"
    assert build_config.cuda_arch_list("", gpu_visible=False) == "8.0;9.0+PTX"  # empty = unset, as for torch


@pytest.mark.parametrize("gpu_visible", [False, True])
def test_arch_from_environment_is_honoured(gpu_visible):
    assert build_config.cuda_arch_list("7.5;8.6", gpu_visible=gpu_visible) == "7.5;8.6"


def test_arch_left_to_torch_when_a_gpu_is_visible():
    assert build_config.cuda_arch_list(None, gpu_visible=True) is None


def test_cmake_architectures_match_the_torch_list():
    assert build_config.cmake_architectures("8.0;9.0+PTX") == ["80-real", "90"]
    assert build_config.cmake_architectures("7.5 8.6+PTX") == ["75-real", "86"]


# ------------------------------------------------------------------ flags, from one source
def test_flags_keep_cpu_and_cuda_rounding_equal():
    assert "-ffp-contract=off" in build_config.CXX_FLAGS
    assert not any("fast_math" in f or "fast-math" in f for f in build_config.NVCC_FLAGS + build_config.CXX_FLAGS)


@pytest.mark.parametrize("setting, want", [("cxx", build_config.CXX_FLAGS), ("nvcc", build_config.NVCC_FLAGS),
                                           ("link", build_config.LINK_FLAGS),
                                           ("arch", [build_config.DEFAULT_ARCH_LIST]),
                                           ("cmake-arch", ["80-real", "90"])])
def test_command_line_prints_the_module_settings(setting, want):
    out = subprocess.run([sys.executable, "build_config.py", setting], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.split("\n")[:-1] == want


def test_setup_cmake_and_ci_check_read_build_config():
    setup_py, cmake, check = _read("setup.py"), _read("CMakeLists.txt"), _read(".ci/cuda_check.sh")
    for name in ("CXX_FLAGS", "NVCC_FLAGS", "LINK_FLAGS", "cuda_arch_list"):
        assert f"build_config.{name}" in setup_py
    for setting in ("cxx", "nvcc", "cmake-arch"):
        assert f"advrobust_build_config({setting} " in cmake
    for setting in ("cxx", "link"):
        assert f"build_config.py {setting})" in check
    assert "-DADVROBUST_CUDA_CHECK_ONLY=ON" in check  # its nvcc flags and architectures: CMakeLists.txt
    for text in (setup_py, cmake, check):  # no flag or architecture of their own
        assert "fast_math" not in text and "8.0;9.0" not in text and "80;90" not in text


# ------------------------------------------------------------------ MMD products in full float32
def _mmd_data(device):
    g = torch.Generator().manual_seed(7)
    # a common offset: the norms are large next to the distances, as TF32 would show
    x = 1.0 + 0.1 * torch.randn(96, 48, generator=g, dtype=torch.float64)
    y = 1.0 + 0.1 * torch.randn(80, 48, generator=g, dtype=torch.float64) + 0.02
    return x.to(device), y.to(device), [0.1, 0.3, 1.0]


@pytest.mark.skipif(not advrobust.has_cpu_kernels(), reason="needs the compiled CPU kernels")
@pytest.mark.parametrize("unbiased", [False, True])
def test_mmd_cpu_float32_ignores_matmul_precision(unbiased):
    x, y, sigmas = _mmd_data("cpu")
    x, y = x.float(), y.float()
    saved = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        want = OPS._mk_mmd_with_grad(x, y, sigmas, unbiased)
        torch.set_float32_matmul_precision("high")
        got = OPS._mk_mmd_with_grad(x, y, sigmas, unbiased)
        got_value = OPS.mk_mmd(x, y, sigmas, unbiased)
    finally:
        torch.set_float32_matmul_precision(saved)
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    assert torch.equal(got_value, want[0])


@pytest.mark.needs_cuda
@pytest.mark.parametrize("unbiased", [False, True])
def test_mmd_cuda_float32_ignores_allow_tf32(unbiased):
    from advrobust.ops import reference as ref

    x, y, sigmas = _mmd_data("cuda")
    want64 = ref.mk_mmd_reference(x, y, sigmas, unbiased)
    x, y = x.float(), y.float()
    saved = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        want = OPS._mk_mmd_with_grad(x, y, sigmas, unbiased)
        torch.backends.cuda.matmul.allow_tf32 = True
        got = OPS._mk_mmd_with_grad(x, y, sigmas, unbiased)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    # float32 products are 1e-4 off here, TF32 ones (10-bit mantissa) 4e-2
    torch.testing.assert_close(got[0].double(), want64, rtol=1e-3, atol=0.0)
