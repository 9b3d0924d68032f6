#!/usr/bin/env bash
# Compile and link check of advrobust's CUDA build, without a GPU and without a CUDA torch:
#  1. every csrc/cuda/*.cu through nvcc for the architectures setup.py builds without a GPU
#     (CMake target cuda_compile_check, warnings as errors; the kernels include no torch headers);
#  2. every C++ source of the CUDA build (csrc/*.cpp, csrc/cpu/*.cpp and the glue
#     csrc/cuda/*.cpp) by g++ against the torch headers (the CPU wheel ships ATen/cuda and
#     c10/cuda) and the CUDA headers;
#  3. all these objects linked into _C.so as setup.py links it, and the library checked: it
#     defines PyInit__C, ldd finds its libraries, and its undefined symbols are only the
#     Python C API's and those of torch's CUDA libraries (libc10_cuda, libtorch_cuda: absent
#     from the CPU wheel, so not linked here). Any other, an advrobust:: one above all, fails.
# Compiler flags and architectures come from build_config.py, as setup.py's do. 1 and 2 run
# side by side; about a minute and a half on 2 cores. Nothing here runs a kernel.
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
rm -rf "$BUILD/cxx" "$BUILD/_C.so"
mkdir -p "$BUILD/cxx"  # before the logs below are written into build/ (absent in a fresh clone)

# 1. nvcc, in the background
(
  cmake -S . -B "$BUILD" -DADVROBUST_CUDA_CHECK_ONLY=ON -DCMAKE_CUDA_COMPILER="$NVCC" \
    -DPython3_EXECUTABLE="$(command -v "$PYTHON")" >"$BUILD.configure.log" 2>&1 \
    || { cat "$BUILD.configure.log"; exit 1; }
  cmake --build "$BUILD" --target cuda_compile_check -j 2
) >"$BUILD.log" 2>&1 &
nvcc_pid=$!

# 2. the C++ sources, with setup.py's flags and defines, then -O0: the link needs their
# symbols, not optimised code, and -O3 would double the time of the whole check.
# C10_CUDA_NO_CMAKE_CONFIGURE_FILE: the CPU wheel lacks the generated c10/cuda/impl/cuda_cmake_macros.h.
mapfile -t cxx_flags < <("$PYTHON" build_config.py cxx)
mapfile -t link_flags < <("$PYTHON" build_config.py link)
TORCH_DIR=$("$PYTHON" -c "import torch, os; print(os.path.dirname(torch.__file__))")
PY_INCLUDE=$("$PYTHON" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
cxx_sources=(csrc/*.cpp csrc/cpu/*.cpp csrc/cuda/*.cpp)
object_of() { echo "$BUILD/cxx/$(echo "${1%.cpp}" | tr / _).o"; }
# as torch.utils.cpp_extension compiles them: its defines, C++20, -fPIC
cxx_command=(g++ "${cxx_flags[@]}" -O0 -fPIC -std=c++20 -Wall -Werror -DADVROBUST_WITH_CUDA
  -DTORCH_API_INCLUDE_EXTENSION_H -DTORCH_EXTENSION_NAME=_C -DC10_CUDA_NO_CMAKE_CONFIGURE_FILE
  -isystem "$TORCH_DIR/include" -isystem "$TORCH_DIR/include/torch/csrc/api/include"
  -isystem "$CUDA_HOME/include" -isystem "$PY_INCLUDE")
cxx_rc=0
for src in "${cxx_sources[@]}"; do echo "$src" "$(object_of "$src")"; done \
  | xargs -P 2 -n 2 bash -c 'n=$#; "${@:1:n-2}" -c "${@:n-1:1}" -o "${@:n}"' _ "${cxx_command[@]}" || cxx_rc=$?

nvcc_rc=0
wait "$nvcc_pid" || nvcc_rc=$?
cat "$BUILD.log"; echo
[ "$nvcc_rc" -eq 0 ] || { echo "cuda_check: FAILED: nvcc compile of csrc/cuda/*.cu" >&2; exit 1; }
[ "$cxx_rc" -eq 0 ] || { echo "cuda_check: FAILED: g++ compile of the C++ sources" >&2; exit 1; }

# 3. link as setup.py does (torch's libraries of the CPU wheel, cudart; no device link: no
# -rdc); an object that is missing fails here, so do duplicate symbols.
cu_objects=()
for cu in csrc/cuda/*.cu; do cu_objects+=("$BUILD/CMakeFiles/cuda_compile_check.dir/$cu.o"); done
cxx_objects=()
for src in "${cxx_sources[@]}"; do cxx_objects+=("$(object_of "$src")"); done
library=$BUILD/_C.so
g++ -shared "${cxx_objects[@]}" "${cu_objects[@]}" "${link_flags[@]}" -L"$TORCH_DIR/lib" -lc10 -ltorch \
  -ltorch_cpu -ltorch_python -L"$CUDA_HOME/lib64" -lcudart -o "$library" \
  || { echo "cuda_check: FAILED: link of $library" >&2; exit 1; }
echo "cuda_check: linked $library from ${#cxx_objects[@]} C++ and ${#cu_objects[@]} CUDA objects"

fail() { echo "cuda_check: FAILED: $1" >&2; shift; printf '%s\n' "$@" | head -20 >&2; exit 1; }
nm -D --defined-only "$library" | grep -w PyInit__C >/dev/null || fail "$library does not define PyInit__C"
ldd_out=$(LD_LIBRARY_PATH="$TORCH_DIR/lib:$CUDA_HOME/lib64" ldd -r "$library" 2>&1)
not_found=$(grep 'not found' <<<"$ldd_out" || true)
[ -z "$not_found" ] || fail "libraries of $library not found:" "$not_found"
ours=$(nm -C --undefined-only "$library" | grep 'advrobust::' || true)
[ -z "$ours" ] || fail "advrobust symbols used but defined by no object:" "$ours"
# ldd -r: what the libraries above leave undefined. Allowed: the Python C API (the
# interpreter provides it) and torch's CUDA side.
unresolved=$(sed -n 's/^\s*undefined symbol: \([^ ]*\).*/\1/p' <<<"$ldd_out" | c++filt | sort -u)
unexpected=$(grep -vE '^_?Py|^(c10|at|torch)::cuda::' <<<"$unresolved" || true)
[ -z "$unexpected" ] || fail "symbols of $library that no library defines:" "$unexpected"
echo "cuda_check: $(grep -c . <<<"$unresolved") symbols left to Python and torch's CUDA libraries," \
  "$(nm -C --defined-only "$library" | grep -E ' [TW] ' | grep -c 'advrobust::gpu::') advrobust::gpu launchers defined"
echo "cuda_check: OK ($(( $(date +%s) - start )) s)"
