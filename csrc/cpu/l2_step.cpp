// l2_step on the CPU: per-sample sums (g.g, u.u, u.g with u = x_adv - x_nat, accumulated in
// double), then a fused write with the per-sample step and scale; sample by sample (while the
// sample is in cache) when there are at least 4 samples per thread, else in two passes.
// With check_x_nat the write pass also tests x_nat for NaN/Inf (steps_checks.h: finish_step);
// not the sums pass, whose vectorised reduction order (so its rounding) must not change.
#include <torch/library.h>

#include <atomic>
#include <vector>

#include "../steps_checks.h"
#include "simd.h"

namespace advrobust {
namespace {

struct L2Sums {
  double gg = 0, uu = 0, ug = 0;
};

template <typename T>
ADVROBUST_SIMD_CLONES L2Sums l2_row_sums(const T* __restrict__ xa, const T* __restrict__ g,
                                         const T* __restrict__ xn, int64_t len) {
  double gg = 0, uu = 0, ug = 0;
#pragma omp simd reduction(+ : gg, uu, ug)
  for (int64_t i = 0; i < len; ++i) {
    const double gi = g[i], ui = static_cast<double>(xa[i] - xn[i]);
    gg += gi * gi;
    uu += ui * ui;
    ug += ui * gi;
  }
  return {gg, uu, ug};
}

// One row of the write pass; kCheck: also returns whether the row's x_nat holds a NaN or Inf
// (an OR reduction in the same loop; the written values do not depend on how it vectorises).
template <bool kCheck, typename T>
ADVROBUST_SIMD_CLONES bool l2_row(const T* __restrict__ xa, const T* __restrict__ g, const T* __restrict__ xn,
                                  T* __restrict__ out, int64_t len, T step, T scale, T lo, T hi) {
  int nonfinite = 0;
  for (int64_t i = 0; i < len; ++i) {
    out[i] = l2_step_element(xa[i], g[i], xn[i], step, scale, lo, hi);
    if constexpr (kCheck) nonfinite |= is_nonfinite(xn[i]);
  }
  return nonfinite != 0;
}

// The kernel's body for one dtype; kCheck: the write pass also flags a NaN/Inf x_nat.
template <bool kCheck, typename T>
void l2_step_rows(const StepArgs<T>& p) {
  const int64_t rows = p.batch * p.channels;
  std::vector<L2Sums> row_sums(rows);
  std::vector<T> step(p.batch), scale(p.batch);
  auto sums_of_rows = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t off = r * p.inner;
      row_sums[r] = l2_row_sums<T>(p.x_adv + off, p.grad + off, p.x_nat + off, p.inner);
    }
  };
  auto coefficients_of_sample = [&](int64_t b) {
    L2Sums s;
    for (int64_t c = 0; c < p.channels; ++c) {  // fixed order: deterministic, the same on both paths
      const L2Sums& q = row_sums[b * p.channels + c];
      s.gg += q.gg, s.uu += q.uu, s.ug += q.ug;
    }
    double st, sc;
    l2_step_coefficients(s.gg, s.uu, s.ug, p.alpha_at(b), p.eps_at(b), &st, &sc);
    step[b] = static_cast<T>(st);
    scale[b] = static_cast<T>(sc);
  };
  auto write_rows = [&](int64_t r0, int64_t r1) {
    bool nonfinite = false;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / p.channels, c = r % p.channels, off = r * p.inner;
      nonfinite |= l2_row<kCheck, T>(p.x_adv + off, p.grad + off, p.x_nat + off, p.out + off, p.inner, step[b],
                                     scale[b], p.lo_at(c), p.hi_at(c));
    }
    if (nonfinite) std::atomic_ref<int32_t>(*p.x_nat_nonfinite).store(1, std::memory_order_relaxed);
  };
  if (p.batch >= 4 * at::get_num_threads()) {  // enough samples to share evenly between threads
    // Samples spread over threads; each sample's sums and write back to back, so its inputs
    // are read from memory once and re-read from cache (a 3x100x100 sample's three inputs
    // take 360 KB): 4 tensors of traffic instead of 7.
    parallel_over(p.batch, 2 * p.channels * p.inner, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        sums_of_rows(b * p.channels, (b + 1) * p.channels);
        coefficients_of_sample(b);
        write_rows(b * p.channels, (b + 1) * p.channels);
      }
    });
  } else {  // fewer samples than threads: two passes, each split over all rows
    parallel_over(rows, p.inner, sums_of_rows);
    for (int64_t b = 0; b < p.batch; ++b) coefficients_of_sample(b);
    parallel_over(rows, p.inner, write_rows);
  }
}

at::Tensor l2_step_cpu(const at::Tensor& x_adv, const at::Tensor& grad, const at::Tensor& x_nat,
                       const at::Tensor& alpha, const at::Tensor& eps, const c10::optional<at::Tensor>& lo,
                       const c10::optional<at::Tensor>& hi, bool check_x_nat) {
  StepInputs in = prepare_step("l2_step", x_adv, grad, x_nat, alpha, eps, lo, hi, check_x_nat);
  if (in.out.numel() == 0) return in.out;
  AT_DISPATCH_FLOATING_TYPES(x_adv.scalar_type(), "l2_step_cpu", [&] {
    const StepArgs<scalar_t> p = step_args<scalar_t>(in);
    if (check_x_nat) {
      l2_step_rows<true>(p);
    } else {
      l2_step_rows<false>(p);
    }
  });
  return finish_step("l2_step", in);
}

}  // namespace

TORCH_LIBRARY_IMPL(advrobust, CPU, m) { m.impl("l2_step", &l2_step_cpu); }

}  // namespace advrobust
