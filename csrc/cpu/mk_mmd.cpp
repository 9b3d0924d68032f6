// mk_mmd on the CPU: the tile functions of mmd_driver.h (dots -> kernel sums or gradient
// weights, fused with the K exponentials), rows spread over threads.
#include <torch/library.h>

#include <algorithm>

#include "../mk_mmd_math.h"
#include "../mmd_driver.h"
#include "simd.h"

namespace advrobust {
namespace {

constexpr int64_t kChunk = 256;  // columns per inner pass: the chunk lives in L1

// One pass over a row segment of dots z_i . z_j (t < len), d_t = ||z_i - z_j||^2:
//  kGradient = false: returns sum_t sum_k exp(c_k d_t), the kernel sum;
//  kGradient = true:  overwrites dots[t] with beta * w(d_t), w(d) = sum_k 2 c_k exp(c_k d),
//                     and returns their sum.
template <bool kGradient, typename T>
ADVROBUST_SIMD_CLONES double fused_row(T* __restrict__ dots, const T* __restrict__ norms_j, T norm_i, int64_t len,
                                       const MmdParams& kp, T beta) {
  T d[kChunk], acc[kChunk];
  double total = 0;
  for (int64_t s = 0; s < len; s += kChunk) {
    const int64_t m = std::min(kChunk, len - s);
    for (int64_t t = 0; t < m; ++t) {
      d[t] = mmd_sq_dist(norm_i, norms_j[s + t], dots[s + t]);
      acc[t] = T(0);
    }
    for (int k = 0; k < kp.num_kernels; ++k) {
      const T c = static_cast<T>(kp.coef[k]);
      const T factor = kGradient ? static_cast<T>(2.0 * kp.coef[k]) : T(1);
      for (int64_t t = 0; t < m; ++t) acc[t] += factor * exp_nonpositive(c * d[t]);
    }
    T part = 0;
#pragma omp simd reduction(+ : part)
    for (int64_t t = 0; t < m; ++t) {
      const T v = kGradient ? beta * acc[t] : acc[t];
      if constexpr (kGradient) dots[s + t] = v;
      part += v;
    }
    total += part;
  }
  return total;
}

template <typename T>
double kernel_sum(const T* dots, const T* norms_j, T norm_i, int64_t len, const MmdParams& kp) {
  return fused_row<false>(const_cast<T*>(dots), norms_j, norm_i, len, kp, T(1));  // reads only
}

void forward_tile_cpu(const at::Tensor& dots, const at::Tensor& norms, int64_t row0, const MmdSetup& s,
                      at::Tensor& row_out) {
  const int64_t rows = dots.size(0), cols = dots.size(1);
  double* out = row_out.mutable_data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES(dots.scalar_type(), "mk_mmd_forward_cpu", [&] {
    const scalar_t* dp = dots.const_data_ptr<scalar_t>();
    const scalar_t* nz = norms.const_data_ptr<scalar_t>();
    parallel_over(rows, cols * s.kernels.num_kernels, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t i = row0 + r;
        const bool i_in_x = i < s.n_x;
        const scalar_t* row = dp + r * cols;  // row[j - row0] = z_i . z_j for j >= row0
        double total = 0;
        if (!s.unbiased) {
          total += mmd_pair_weight(s, i_in_x, i_in_x) * mmd_self_kernel(s.kernels);  // d(z_i, z_i) = 0 exactly
        }
        const int64_t x_end = std::max(i + 1, s.n_x);  // [i+1, x_end) are x columns when i is in x
        if (i_in_x) {
          total += 2.0 * s.a_xx * kernel_sum(row + (i + 1 - row0), nz + i + 1, nz[i], s.n_x - i - 1, s.kernels);
        }
        total += 2.0 * mmd_pair_weight(s, i_in_x, false) *
                 kernel_sum(row + (x_end - row0), nz + x_end, nz[i], s.n_total - x_end, s.kernels);
        out[i] = total;
      }
    });
  });
}

void backward_tile_cpu(at::Tensor& dots, const at::Tensor& norms, int64_t row0, const MmdSetup& s,
                       at::Tensor& row_sums) {
  const int64_t rows = dots.size(0), cols = dots.size(1), N = s.n_total;
  AT_DISPATCH_FLOATING_TYPES(dots.scalar_type(), "mk_mmd_backward_cpu", [&] {
    scalar_t* dp = dots.mutable_data_ptr<scalar_t>();
    const scalar_t* nz = norms.const_data_ptr<scalar_t>();
    scalar_t* sums = row_sums.mutable_data_ptr<scalar_t>();
    parallel_over(rows, cols * s.kernels.num_kernels, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t i = row0 + r;
        const bool i_in_x = i < s.n_x;
        scalar_t* row = dp + r * cols;  // row[j - row0] for j >= row0
        std::fill(row, row + (i + 1 - row0), scalar_t(0));  // pairs j <= i belong to earlier rows
        const int64_t x_end = std::max(i + 1, s.n_x);  // [i+1, x_end) are x columns when i is in x
        double total = 0;
        if (i_in_x) {
          total += fused_row<true>(row + (i + 1 - row0), nz + i + 1, nz[i], s.n_x - i - 1, s.kernels,
                                   static_cast<scalar_t>(2.0 * s.a_xx));
        }
        total += fused_row<true>(row + (x_end - row0), nz + x_end, nz[i], N - x_end, s.kernels,
                                 static_cast<scalar_t>(2.0 * mmd_pair_weight(s, i_in_x, false)));
        sums[r] = static_cast<scalar_t>(total);
      }
    });
  });
}

at::Tensor mk_mmd_cpu(const at::Tensor& x, const at::Tensor& y, at::ArrayRef<double> sigmas, bool unbiased) {
  return mk_mmd_forward(x, y, sigmas, unbiased, &forward_tile_cpu);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> mk_mmd_with_grad_cpu(const at::Tensor& x, const at::Tensor& y,
                                                                    at::ArrayRef<double> sigmas, bool unbiased) {
  return mk_mmd_with_grad(x, y, sigmas, unbiased, &forward_tile_cpu, &backward_tile_cpu);
}

}  // namespace

TORCH_LIBRARY_IMPL(advrobust, CPU, m) {
  m.impl("mk_mmd", &mk_mmd_cpu);
  m.impl("_mk_mmd_with_grad", &mk_mmd_with_grad_cpu);
}

TORCH_LIBRARY_IMPL(advrobust, AutocastCPU, m) {  // float32 inside autocast: see mmd_driver.h
  register_mmd_autocast<c10::DispatchKey::AutocastCPU, c10::DeviceType::CPU>(m);
}

}  // namespace advrobust
