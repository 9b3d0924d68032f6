// linf_step on CUDA: one fused elementwise pass over the (B, C, S) view, one thread per
// V elements (V = 16 bytes' worth when the rows and pointers allow vector loads). With a
// non-null p.x_nat_nonfinite a thread that reads a NaN/Inf x_nat sets that flag (every such
// thread writes the same 1: no atomics needed, no extra pass).
#include <cuda_runtime.h>

#include <cstdint>

#include "../steps_math.h"
#include "cuda_utils.cuh"
#include "steps_launchers.h"

namespace advrobust {
namespace gpu {
namespace {

// n_vec = B*C*S / V; V divides S, so the V elements of one vector share sample and channel.
template <typename T, int V>
__global__ void __launch_bounds__(kThreads) linf_step_kernel(const StepArgs<T> p, int64_t n_vec) {
  for (int64_t v = global_thread_x(); v < n_vec; v += grid_threads_x()) {
    const int64_t i = v * V;
    const int64_t row = i / p.inner;
    const int64_t b = row / p.channels, c = row - b * p.channels;
    const T alpha = p.alpha_at(b), eps = p.eps_at(b);
    const T lo = p.lo_at(c);
    const T hi = p.hi_at(c);
    const Vec<T, V> xa = load_vec<T, V>(p.x_adv + i), g = load_vec<T, V>(p.grad + i),
                    xn = load_vec<T, V>(p.x_nat + i);
    Vec<T, V> o;
#pragma unroll
    for (int k = 0; k < V; ++k) o.v[k] = linf_step_element(xa.v[k], g.v[k], xn.v[k], alpha, eps, lo, hi);
    store_vec<T, V>(p.out + i, o);
    if (p.x_nat_nonfinite != nullptr) {
      bool nonfinite = false;
#pragma unroll
      for (int k = 0; k < V; ++k) nonfinite |= is_nonfinite(xn.v[k]);
      if (nonfinite) *p.x_nat_nonfinite = 1;
    }
  }
}

}  // namespace

template <typename T>
cudaError_t launch_linf_step(const StepArgs<T>& p, cudaStream_t stream) {
  const int64_t n = p.batch * p.channels * p.inner;
  if (n == 0) return cudaSuccess;
  constexpr int V = 16 / sizeof(T);
  const bool vectorise = p.inner % V == 0 && aligned_to(p.x_adv, 16) && aligned_to(p.grad, 16) &&
                         aligned_to(p.x_nat, 16) && aligned_to(p.out, 16);
  if (vectorise) {
    linf_step_kernel<T, V><<<blocks_for(n / V), kThreads, 0, stream>>>(p, n / V);
  } else {
    linf_step_kernel<T, 1><<<blocks_for(n), kThreads, 0, stream>>>(p, n);
  }
  return cudaGetLastError();
}

template cudaError_t launch_linf_step<float>(const StepArgs<float>&, cudaStream_t);
template cudaError_t launch_linf_step<double>(const StepArgs<double>&, cudaStream_t);

}  // namespace gpu
}  // namespace advrobust
