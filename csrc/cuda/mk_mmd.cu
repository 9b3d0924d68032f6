// mk_mmd on CUDA: the tile functions of mmd_driver.h (dots -> kernel sums, or dots ->
// gradient weights), fused with the K exponentials. A tile row's columns are split into
// chunks: grid (chunks, rows), one float64 block sum per (row, chunk) into a scratch
// buffer; a second kernel (one thread per row) adds a row's chunks in order and writes
// the row's result. No atomics, so results are deterministic.
#include <cuda_runtime.h>

#include <cstdint>

#include "../mk_mmd_math.h"
#include "cuda_utils.cuh"
#include "mk_mmd_launchers.h"

namespace advrobust {
namespace gpu {
namespace {

constexpr int64_t kColumnsPerChunk = 4096;  // 16 per thread
constexpr int64_t kMaxChunks = 64;

// The kernel widths as T, once per block in shared memory: coef[k] = c_k, coef2[k] = 2 c_k.
template <typename T>
__device__ __forceinline__ void load_coefficients(const MmdSetup& s, T* coef, T* coef2) {
  for (int k = threadIdx.x; k < s.kernels.num_kernels; k += blockDim.x) {
    coef[k] = static_cast<T>(s.kernels.coef[k]);
    coef2[k] = static_cast<T>(2.0 * s.kernels.coef[k]);
  }
  __syncthreads();
}

// sum_k exp(c_k d), accumulated in T in kernel order (as the CPU's kernel_sum).
template <typename T>
__device__ __forceinline__ T kernel_value(const T* coef, int num_kernels, T d) {
  T acc = T(0);
  for (int k = 0; k < num_kernels; ++k) acc += exp_nonpositive(coef[k] * d);
  return acc;
}

// sum_k 2 c_k exp(c_k d) = w(d), accumulated in T in kernel order (as gradient_weights).
template <typename T>
__device__ __forceinline__ T weight_value(const T* coef, const T* coef2, int num_kernels, T d) {
  T acc = T(0);
  for (int k = 0; k < num_kernels; ++k) acc += coef2[k] * exp_nonpositive(coef[k] * d);
  return acc;
}

// Block (chunk, r): for i = row0 + r and the columns j > i of this chunk, the sums of
// k(z_i, z_j) over x columns and over y columns -> partials[(r * chunks + chunk) * 2 + {0, 1}].
template <typename T>
__global__ void __launch_bounds__(kThreads)
    mmd_forward_partials_kernel(const MmdForwardTileArgs<T> p, int64_t chunk_len,
                                const __grid_constant__ MmdSetup s) {
  __shared__ T coef[kMaxKernels], coef2[kMaxKernels];
  load_coefficients(s, coef, coef2);
  const int nk = s.kernels.num_kernels;
  const int64_t chunk = blockIdx.x;
  const int64_t N = s.n_total;
  for (int64_t r = blockIdx.y; r < p.rows; r += gridDim.y) {
    const int64_t i = p.row0 + r;
    const T norm_i = p.norms[i];
    const T* row = p.dots + r * p.cols;  // row[j - row0] = z_i . z_j
    const int64_t begin = max_of(p.row0 + chunk * chunk_len, i + 1);
    const int64_t end = min_of(p.row0 + (chunk + 1) * chunk_len, N);
    double sums[2] = {0.0, 0.0};  // x columns, y columns
    for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x) {
      const T value = kernel_value(coef, nk, mmd_sq_dist(norm_i, p.norms[j], row[j - p.row0]));
      if (j < s.n_x) {
        sums[0] += value;
      } else {
        sums[1] += value;
      }
    }
    block_sum<2>(sums);
    if (threadIdx.x == 0) {
      double* out = p.partials + (r * p.chunks + chunk) * 2;
      out[0] = sums[0];
      out[1] = sums[1];
    }
  }
}

// One thread per row: row_out[i] = diagonal + 2 a_xx sum_x + 2 a(i, y) sum_y, where the
// diagonal is a(i, i) K (biased: k(z_i, z_i) = K exactly, see mmd_self_kernel) or 0
// (unbiased): the CPU's forward_tile_cpu.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    mmd_forward_rows_kernel(const MmdForwardTileArgs<T> p, const __grid_constant__ MmdSetup s) {
  for (int64_t r = global_thread_x(); r < p.rows; r += grid_threads_x()) {
    const int64_t i = p.row0 + r;
    const bool i_in_x = i < s.n_x;
    double sum_x = 0.0, sum_y = 0.0;
    for (int64_t chunk = 0; chunk < p.chunks; ++chunk) {
      const double* q = p.partials + (r * p.chunks + chunk) * 2;
      sum_x += q[0];
      sum_y += q[1];
    }
    double total = 0.0;
    if (!s.unbiased) total += mmd_pair_weight(s, i_in_x, i_in_x) * mmd_self_kernel(s.kernels);  // d(z_i, z_i) = 0
    if (i_in_x) total += 2.0 * s.a_xx * sum_x;
    total += 2.0 * mmd_pair_weight(s, i_in_x, false) * sum_y;
    p.row_out[i] = total;
  }
}

// Block (chunk, r): overwrites dots[r, c] (j = row0 + c) with W_ij = 2 a(i, j) w(d_ij) for
// j > i and 0 for j <= i, for the columns of this chunk, and writes their sum to
// partials[r * chunks + chunk].
template <typename T>
__global__ void __launch_bounds__(kThreads)
    mmd_backward_partials_kernel(const MmdBackwardTileArgs<T> p, int64_t chunk_len,
                                 const __grid_constant__ MmdSetup s) {
  __shared__ T coef[kMaxKernels], coef2[kMaxKernels];
  load_coefficients(s, coef, coef2);
  const int nk = s.kernels.num_kernels;
  const int64_t chunk = blockIdx.x;
  const int64_t begin = chunk * chunk_len, end = min_of(begin + chunk_len, p.cols);
  for (int64_t r = blockIdx.y; r < p.rows; r += gridDim.y) {
    const int64_t i = p.row0 + r;
    const bool i_in_x = i < s.n_x;
    const T norm_i = p.norms[i];
    const T beta_x = static_cast<T>(2.0 * mmd_pair_weight(s, i_in_x, true));
    const T beta_y = static_cast<T>(2.0 * mmd_pair_weight(s, i_in_x, false));
    T* row = p.dots + r * p.cols;
    double sums[1] = {0.0};
    for (int64_t c = begin + threadIdx.x; c < end; c += blockDim.x) {
      const int64_t j = p.row0 + c;
      T w = T(0);  // each pair once: j <= i belongs to an earlier row (or is the diagonal)
      if (j > i) {
        w = (j < s.n_x ? beta_x : beta_y) * weight_value(coef, coef2, nk, mmd_sq_dist(norm_i, p.norms[j], row[c]));
      }
      row[c] = w;
      sums[0] += w;
    }
    block_sum<1>(sums);
    if (threadIdx.x == 0) p.partials[r * p.chunks + chunk] = sums[0];
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) mmd_backward_rows_kernel(const MmdBackwardTileArgs<T> p) {
  for (int64_t r = global_thread_x(); r < p.rows; r += grid_threads_x()) {
    double total = 0.0;
    for (int64_t chunk = 0; chunk < p.chunks; ++chunk) total += p.partials[r * p.chunks + chunk];
    p.row_sums[r] = static_cast<T>(total);
  }
}

}  // namespace

int64_t mmd_tile_chunks(int64_t cols) {
  return min_of<int64_t>(max_of<int64_t>((cols + kColumnsPerChunk - 1) / kColumnsPerChunk, 1), kMaxChunks);
}

template <typename T>
cudaError_t launch_mmd_forward_tile(const MmdForwardTileArgs<T>& p, const MmdSetup& setup, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  const int64_t chunk_len = (p.cols + p.chunks - 1) / p.chunks;
  const dim3 grid(static_cast<unsigned int>(p.chunks), static_cast<unsigned int>(min_of<int64_t>(p.rows, 65535)));
  mmd_forward_partials_kernel<T><<<grid, kThreads, 0, stream>>>(p, chunk_len, setup);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  mmd_forward_rows_kernel<T><<<blocks_for(p.rows), kThreads, 0, stream>>>(p, setup);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_mmd_backward_tile(const MmdBackwardTileArgs<T>& p, const MmdSetup& setup,
                                     cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  const int64_t chunk_len = (p.cols + p.chunks - 1) / p.chunks;
  const dim3 grid(static_cast<unsigned int>(p.chunks), static_cast<unsigned int>(min_of<int64_t>(p.rows, 65535)));
  mmd_backward_partials_kernel<T><<<grid, kThreads, 0, stream>>>(p, chunk_len, setup);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  mmd_backward_rows_kernel<T><<<blocks_for(p.rows), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

template cudaError_t launch_mmd_forward_tile<float>(const MmdForwardTileArgs<float>&, const MmdSetup&, cudaStream_t);
template cudaError_t launch_mmd_forward_tile<double>(const MmdForwardTileArgs<double>&, const MmdSetup&,
                                                     cudaStream_t);
template cudaError_t launch_mmd_backward_tile<float>(const MmdBackwardTileArgs<float>&, const MmdSetup&,
                                                     cudaStream_t);
template cudaError_t launch_mmd_backward_tile<double>(const MmdBackwardTileArgs<double>&, const MmdSetup&,
                                                      cudaStream_t);

}  // namespace gpu
}  // namespace advrobust
