// Small device helpers shared by the CUDA kernels: launch shapes, grid-stride indices,
// vector loads, a deterministic block reduction, infinities. CUDA headers only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "../kernel_math.h"

namespace advrobust {
namespace gpu {

constexpr int kThreads = 256;          // threads per block of every kernel here
constexpr int64_t kMaxBlocks = 65535;  // grid-stride loops cover the rest

// Blocks for n work items at kThreads per block, at least 1, at most `cap`.
inline unsigned int blocks_for(int64_t n, int64_t cap = kMaxBlocks) {
  return static_cast<unsigned int>(min_of<int64_t>(max_of<int64_t>((n + kThreads - 1) / kThreads, 1), cap));
}

__device__ __forceinline__ int64_t global_thread_x() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_threads_x() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }


// V consecutive elements, aligned so that one load/store instruction moves them all
// (float4 / double2 for V * sizeof(T) == 16).
template <typename T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

template <typename T, int V>
__device__ __forceinline__ Vec<T, V> load_vec(const T* p) {
  return *reinterpret_cast<const Vec<T, V>*>(p);
}
template <typename T, int V>
__device__ __forceinline__ void store_vec(T* p, const Vec<T, V>& v) {
  *reinterpret_cast<Vec<T, V>*>(p) = v;
}

inline bool aligned_to(const void* p, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) == 0;
}

// Sums v[0..N) over the block (blockDim.x a multiple of 32, at most 1024); the result is
// valid in thread 0. Fixed shuffle tree, then warp totals in warp order: the same inputs
// give the same bits every time. Every thread of the block must call it.
template <int N>
__device__ __forceinline__ void block_sum(double (&v)[N]) {
  __shared__ double warp_totals[N][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int n = 0; n < N; ++n) {
    for (int offset = 16; offset > 0; offset >>= 1) v[n] += __shfl_down_sync(0xffffffffu, v[n], offset);
  }
  if (lane == 0) {
#pragma unroll
    for (int n = 0; n < N; ++n) warp_totals[n][warp] = v[n];
  }
  __syncthreads();
  if (warp == 0) {
    const int num_warps = static_cast<int>(blockDim.x >> 5);
#pragma unroll
    for (int n = 0; n < N; ++n) {
      v[n] = lane < num_warps ? warp_totals[n][lane] : 0.0;
      for (int offset = 16; offset > 0; offset >>= 1) v[n] += __shfl_down_sync(0xffffffffu, v[n], offset);
    }
  }
  __syncthreads();  // warp_totals may be reused by the next call
}

}  // namespace gpu
}  // namespace advrobust
