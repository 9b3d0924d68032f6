#!/usr/bin/env bash
# The GPU check, in one command (under 8 minutes on a machine with a CUDA GPU and a CUDA torch):
#
#     bash scripts/gpu_check.sh
#
# 1. refuses, saying why, when no CUDA GPU is visible to a CUDA build of torch;
# 2. builds advrobust's CPU and CUDA kernels in place (FORCE_CUDA=1 setup.py build_ext --inplace);
# 3. runs every CUDA test (pytest -m needs_cuda);
# 4. runs the op, attack, certification and scan benchmarks on the GPU (pytest bench --bench-device cuda);
# 5. runs the rest of the fast suite (not needs_cuda, not slow);
# 6. writes bench/RESULTS_cuda.md (python -m advrobust.bench.cuda_report).
# Each stage has a time limit (480 s in all); a stage that overruns is reported as failed.
#
# Logs and the benchmarks' JSON go to bench/out/gpu_check/ (git-ignored). A failing test stage is
# recorded in the report and the script goes on; it exits 1 at the end if any stage failed.
# Environment: TORCH_CUDA_ARCH_LIST (default: the visible GPU's), MAX_JOBS (default: all cores).
set -uo pipefail

cd "$(dirname "$0")/.."
OUT=bench/out/gpu_check
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
failed=()
start=$SECONDS

stage() {  # stage NAME TIMEOUT_S COMMAND...: run COMMAND under a time limit, log to $OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit} s): $*"
    # SIGINT first, as Ctrl-C (pytest may still write the benchmarks done so far), SIGKILL 15 s later
    if timeout --signal=INT --kill-after=15 "$limit" "$@" >"$OUT/$name.log" 2>&1; then
        echo "   ok ($((SECONDS - start)) s since the start)"
    else
        echo "   FAILED (exit $?; 124: over its limit) at $((SECONDS - start)) s since the start; last lines of $OUT/$name.log:"
        tail -n 15 "$OUT/$name.log" | sed 's/^/   | /'
        failed+=("$name")
    fi
}

python -m advrobust.bench.cuda_report preflight || exit 2
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv

stage build 150 env FORCE_CUDA=1 python setup.py build_ext --inplace
if ! python -c "import advrobust, sys; sys.exit(0 if advrobust.has_cuda_kernels() else 1)"; then
    echo "gpu_check: the CUDA kernels did not build (see $OUT/build.log); nothing to test on the GPU" >&2
    exit 1
fi

stage tests_cuda 60 python -m pytest -q -p no:cacheprovider -m needs_cuda tests

# the steps at the recorded sizes (full tier: 64x5x64x64 and 256x3x100x100), the rest at the default sizes
BENCH=(python -m pytest bench --benchmark-only --bench-device cuda -q -p no:cacheprovider --benchmark-max-time 0.5)
stage bench_steps 90 "${BENCH[@]}" --bench-tier full -k "test_step" --benchmark-json "$OUT/steps.json"
stage bench_ops 60 "${BENCH[@]}" -k "de_build or de_trial or mk_mmd" --benchmark-json "$OUT/ops.json"
stage bench_attacks 50 "${BENCH[@]}" -k "attack or onepixel or certify or scan" --benchmark-json "$OUT/attacks.json"

# last: the rest of the fast suite, on the machine the CUDA build runs on
stage tests_rest 70 python -m pytest -q -p no:cacheprovider -m "not needs_cuda and not slow" tests
{ for s in tests_cuda tests_rest; do echo "pytest, $s:"; tail -n 3 "$OUT/$s.log"; done; } >"$OUT/tests.txt"

jsons=()
for j in "$OUT/steps.json" "$OUT/ops.json" "$OUT/attacks.json"; do [ -f "$j" ] && jsons+=("$j"); done
if [ ${#jsons[@]} -gt 0 ]; then
    python -m advrobust.bench.cuda_report report --json "${jsons[@]}" --tests "$OUT/tests.txt" \
        --out bench/RESULTS_cuda.md || failed+=(report)
else
    echo "gpu_check: no benchmark ran, no report" >&2
    failed+=(report)
fi

echo "gpu_check: done in $((SECONDS - start)) s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "gpu_check: failed stages: ${failed[*]} (logs in $OUT/)" >&2
    exit 1
fi
