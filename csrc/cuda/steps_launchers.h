// Host-side entry points of the linf_step / l2_step CUDA kernels (linf_step.cu, l2_step.cu),
// called by their torch glue (steps_glue.cpp).
// Plain C++ with no torch headers (raw pointers in small params structs, a cudaStream_t, a
// cudaError_t back: the launch check, cudaGetLastError() after the launches), so the .cu
// files compile with plain nvcc. Every launcher is explicitly instantiated for float and
// double in its .cu file. All tensors are contiguous, row-major, on the current device;
// sizes are 64-bit.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "../steps_math.h"

namespace advrobust {
namespace gpu {

// StepArgs (../steps_math.h): the pointers and the (batch, channels, inner) layout; a
// non-null x_nat_nonfinite is set to 1 when the pass reads a NaN/Inf x_nat.
template <typename T>
cudaError_t launch_linf_step(const StepArgs<T>& args, cudaStream_t stream);

// l2_step's first pass splits each sample into this many chunks; the glue allocates the
// (batch, chunks, 3) float64 scratch buffer of per-chunk (g.g, u.u, u.g) sums.
int64_t l2_step_chunks(int64_t per_sample);

template <typename T>
cudaError_t launch_l2_step(const StepArgs<T>& args, double* partials, int64_t chunks, cudaStream_t stream);

}  // namespace gpu
}  // namespace advrobust
