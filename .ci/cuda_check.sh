#!/usr/bin/env bash
# Compile check of advrobust's CUDA side, without a GPU and without a CUDA torch:
#  1. every csrc/cuda/*.cu through nvcc for sm_80 and sm_90 (CMake target cuda_compile_check,
#     warnings as errors; the kernels include no torch headers);
#  2. the torch glue csrc/cuda/*_glue.cpp compiled by g++ against the torch headers (the CPU
#     wheel ships ATen/cuda and c10/cuda) and the CUDA headers;
#  3. every advrobust::gpu launcher the glue calls is defined by the .cu objects (so the
#     explicit float/double instantiations match launchers.h).
# 1 and 2 run side by side; about a minute on 2 cores. Nothing here runs a kernel.
# Usage: bash .ci/cuda_check.sh   (from anywhere; CUDA_HOME defaults to /usr/local/cuda)
set -euo pipefail
cd "$(dirname "$0")/.."

CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
NVCC=${NVCC:-$CUDA_HOME/bin/nvcc}
PYTHON=${PYTHON:-python3}
BUILD=build/cmake-check
start=$(date +%s)

if [ ! -x "$NVCC" ]; then
  echo "cuda_check: no nvcc at $NVCC (set CUDA_HOME or NVCC)" >&2
  exit 1
fi
echo "cuda_check: $("$NVCC" --version | tail -1)"
mkdir -p "$BUILD/glue"  # before the logs below are written into build/ (absent in a fresh clone)

# 1. nvcc, in the background
(
  cmake -S . -B "$BUILD" -DADVROBUST_CUDA_CHECK_ONLY=ON -DCMAKE_CUDA_COMPILER="$NVCC" >"$BUILD.configure.log" 2>&1 \
    || { cat "$BUILD.configure.log"; exit 1; }
  cmake --build "$BUILD" --target cuda_compile_check -j 2
) >"$BUILD.log" 2>&1 &
nvcc_pid=$!

# 2. the glue (-c, not only -fsyntax-only, so that step 3 can read its symbols)
TORCH_INCLUDE=$("$PYTHON" -c "import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'include'))")
PY_INCLUDES=$("$PYTHON" -c "import sysconfig; print('-I' + sysconfig.get_paths()['include'])")
glue_rc=0
# C10_CUDA_NO_CMAKE_CONFIGURE_FILE: the CPU wheel lacks the generated c10/cuda/impl/cuda_cmake_macros.h.
for glue in csrc/cuda/*.cpp; do
  g++ -c -O0 -std=c++20 -Wall -Werror -DADVROBUST_WITH_CUDA -DC10_CUDA_NO_CMAKE_CONFIGURE_FILE \
    -isystem "$TORCH_INCLUDE" -isystem "$TORCH_INCLUDE/torch/csrc/api/include" -isystem "$CUDA_HOME/include" \
    $PY_INCLUDES "$glue" -o "$BUILD/glue/$(basename "$glue" .cpp).o" || glue_rc=$?
done

nvcc_rc=0
wait "$nvcc_pid" || nvcc_rc=$?
cat "$BUILD.log"; echo
[ "$nvcc_rc" -eq 0 ] || { echo "cuda_check: FAILED: nvcc compile of csrc/cuda/*.cu" >&2; exit 1; }
[ "$glue_rc" -eq 0 ] || { echo "cuda_check: FAILED: g++ compile of csrc/cuda/*.cpp" >&2; exit 1; }

# 3. the launchers the glue needs vs the ones the kernels define
needed=$(nm -C --undefined-only "$BUILD"/glue/*.o | grep -o 'advrobust::gpu::.*' | sort -u)
defined=$(nm -C --defined-only "$BUILD"/CMakeFiles/cuda_compile_check.dir/csrc/cuda/*.o | grep -E ' [TW] ' \
  | grep -o 'advrobust::gpu::.*' | sort -u)
missing=$(comm -23 <(echo "$needed") <(echo "$defined"))
if [ -n "$missing" ]; then
  echo "cuda_check: FAILED: launchers used by csrc/cuda/*.cpp but not defined in csrc/cuda/*.cu:" >&2
  echo "$missing" >&2
  exit 1
fi
echo "cuda_check: $(echo "$needed" | wc -l) launchers used by the glue, all defined by the kernels"
echo "cuda_check: OK ($(( $(date +%s) - start )) s)"
