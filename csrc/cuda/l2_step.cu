// l2_step on CUDA, deterministic in two kernels:
//  1. l2_partials_kernel, grid (chunks, B): each block sums g.g, u.u, u.g (u = x_adv - x_nat,
//     in float64) over one chunk of one sample into partials[b][chunk][0..3).
//  2. l2_apply_kernel, grid (blocks, B): each block adds its sample's partials in a fixed
//     order, gets step and scale from l2_step_coefficients, then writes its share of the
//     sample with l2_step_element.
// No atomics: the same input gives the same bits on every run. With a non-null
// p.x_nat_nonfinite, the second kernel also sets that flag when it reads a NaN/Inf x_nat (as
// the CPU kernel, in the write pass).
#include <cuda_runtime.h>

#include <cstdint>

#include "../steps_math.h"
#include "cuda_utils.cuh"
#include "steps_launchers.h"

namespace advrobust {
namespace gpu {
namespace {

constexpr int64_t kMinChunk = 2048;  // elements per partial-sum block (8 per thread)
constexpr int64_t kMaxChunks = 512;

template <typename T>
__global__ void __launch_bounds__(kThreads)
    l2_partials_kernel(const StepArgs<T> p, int64_t per_sample, int64_t chunk_len, int64_t chunks,
                       double* __restrict__ partials) {
  const int64_t chunk = blockIdx.x;
  const int64_t begin = chunk * chunk_len;
  const int64_t end = min_of(begin + chunk_len, per_sample);
  for (int64_t b = blockIdx.y; b < p.batch; b += gridDim.y) {
    const int64_t base = b * per_sample;
    double s[3] = {0.0, 0.0, 0.0};
    for (int64_t e = begin + threadIdx.x; e < end; e += blockDim.x) {
      const double gi = p.grad[base + e];
      const double ui = static_cast<double>(p.x_adv[base + e] - p.x_nat[base + e]);  // as the CPU: u in T
      s[0] += gi * gi;
      s[1] += ui * ui;
      s[2] += ui * gi;
    }
    block_sum<3>(s);
    if (threadIdx.x == 0) {
      double* out = partials + (b * chunks + chunk) * 3;
      out[0] = s[0];
      out[1] = s[1];
      out[2] = s[2];
    }
  }
}

// V divides inner (so also per_sample): a vector never straddles a channel.
template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    l2_apply_kernel(const StepArgs<T> p, int64_t per_sample, const double* __restrict__ partials,
                    int64_t chunks) {
  __shared__ T coefficients[2];  // step, scale of the current sample
  const int64_t n_vec = per_sample / V;
  for (int64_t b = blockIdx.y; b < p.batch; b += gridDim.y) {
    double s[3] = {0.0, 0.0, 0.0};
    for (int64_t k = threadIdx.x; k < chunks; k += blockDim.x) {
      const double* q = partials + (b * chunks + k) * 3;
      s[0] += q[0];
      s[1] += q[1];
      s[2] += q[2];
    }
    block_sum<3>(s);
    if (threadIdx.x == 0) {
      double step, scale;
      l2_step_coefficients(s[0], s[1], s[2], static_cast<double>(p.alpha_at(b)),
                           static_cast<double>(p.eps_at(b)), &step, &scale);
      coefficients[0] = static_cast<T>(step);
      coefficients[1] = static_cast<T>(scale);
    }
    __syncthreads();
    const T step = coefficients[0], scale = coefficients[1];
    const int64_t base = b * per_sample;
    for (int64_t v = global_thread_x(); v < n_vec; v += grid_threads_x()) {
      const int64_t e = v * V;
      const int64_t c = e / p.inner;
      const T lo = p.lo_at(c);
      const T hi = p.hi_at(c);
      const Vec<T, V> xa = load_vec<T, V>(p.x_adv + base + e), g = load_vec<T, V>(p.grad + base + e),
                      xn = load_vec<T, V>(p.x_nat + base + e);
      Vec<T, V> o;
#pragma unroll
      for (int k = 0; k < V; ++k) o.v[k] = l2_step_element(xa.v[k], g.v[k], xn.v[k], step, scale, lo, hi);
      store_vec<T, V>(p.out + base + e, o);
      if (p.x_nat_nonfinite != nullptr) {
        bool nonfinite = false;
#pragma unroll
        for (int k = 0; k < V; ++k) nonfinite |= is_nonfinite(xn.v[k]);
        if (nonfinite) *p.x_nat_nonfinite = 1;
      }
    }
    __syncthreads();  // coefficients is rewritten for the next sample
  }
}

}  // namespace

int64_t l2_step_chunks(int64_t per_sample) {
  return min_of<int64_t>(max_of<int64_t>((per_sample + kMinChunk - 1) / kMinChunk, 1), kMaxChunks);
}

template <typename T>
cudaError_t launch_l2_step(const StepArgs<T>& p, double* partials, int64_t chunks, cudaStream_t stream) {
  const int64_t per_sample = p.channels * p.inner;
  if (p.batch == 0 || per_sample == 0) return cudaSuccess;
  const int64_t chunk_len = (per_sample + chunks - 1) / chunks;
  const unsigned int grid_y = static_cast<unsigned int>(min_of<int64_t>(p.batch, 65535));
  l2_partials_kernel<T><<<dim3(static_cast<unsigned int>(chunks), grid_y), kThreads, 0, stream>>>(
      p, per_sample, chunk_len, chunks, partials);
  constexpr int V = 16 / sizeof(T);
  const bool vectorise = p.inner % V == 0 && aligned_to(p.x_adv, 16) && aligned_to(p.grad, 16) &&
                         aligned_to(p.x_nat, 16) && aligned_to(p.out, 16);
  if (vectorise) {
    const dim3 grid(blocks_for(per_sample / V, 4096), grid_y);
    l2_apply_kernel<T, V><<<grid, kThreads, 0, stream>>>(p, per_sample, partials, chunks);
  } else {
    const dim3 grid(blocks_for(per_sample, 4096), grid_y);
    l2_apply_kernel<T, 1><<<grid, kThreads, 0, stream>>>(p, per_sample, partials, chunks);
  }
  return cudaGetLastError();
}

template cudaError_t launch_l2_step<float>(const StepArgs<float>&, double*, int64_t, cudaStream_t);
template cudaError_t launch_l2_step<double>(const StepArgs<double>&, double*, int64_t, cudaStream_t);

}  // namespace gpu
}  // namespace advrobust
