// linf_step on the CPU: one pass over (B*C) rows of S elements, rows spread over threads.
// With check_x_nat the same pass also tests x_nat for NaN/Inf (steps_checks.h: finish_step).
#include <torch/library.h>

#include <atomic>

#include "../steps_checks.h"
#include "simd.h"

namespace advrobust {
namespace {

// One row; kCheck: also returns whether the row's x_nat holds a NaN or Inf (an OR reduction
// in the same vectorised loop, not a second pass).
template <bool kCheck, typename T>
ADVROBUST_SIMD_CLONES bool linf_row(const T* __restrict__ xa, const T* __restrict__ g, const T* __restrict__ xn,
                                    T* __restrict__ out, int64_t len, T alpha, T eps, T lo, T hi) {
  int nonfinite = 0;
  for (int64_t i = 0; i < len; ++i) {
    out[i] = linf_step_element(xa[i], g[i], xn[i], alpha, eps, lo, hi);
    if constexpr (kCheck) nonfinite |= is_nonfinite(xn[i]);
  }
  return nonfinite != 0;
}

template <bool kCheck, typename T>
void linf_rows(const StepArgs<T>& p) {
  parallel_over(p.batch * p.channels, p.inner, [&](int64_t begin, int64_t end) {
    bool nonfinite = false;
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / p.channels, c = r % p.channels, off = r * p.inner;
      nonfinite |= linf_row<kCheck, T>(p.x_adv + off, p.grad + off, p.x_nat + off, p.out + off, p.inner,
                                       p.alpha_at(b), p.eps_at(b), p.lo_at(c), p.hi_at(c));
    }
    if (nonfinite) std::atomic_ref<int32_t>(*p.x_nat_nonfinite).store(1, std::memory_order_relaxed);
  });
}

at::Tensor linf_step_cpu(const at::Tensor& x_adv, const at::Tensor& grad, const at::Tensor& x_nat,
                         const at::Tensor& alpha, const at::Tensor& eps, const c10::optional<at::Tensor>& lo,
                         const c10::optional<at::Tensor>& hi, bool check_x_nat) {
  StepInputs in = prepare_step("linf_step", x_adv, grad, x_nat, alpha, eps, lo, hi, check_x_nat);
  if (in.out.numel() == 0) return in.out;
  AT_DISPATCH_FLOATING_TYPES(x_adv.scalar_type(), "linf_step_cpu", [&] {
    const StepArgs<scalar_t> p = step_args<scalar_t>(in);
    if (check_x_nat) {
      linf_rows<true>(p);
    } else {
      linf_rows<false>(p);
    }
  });
  return finish_step("linf_step", in);
}

}  // namespace

TORCH_LIBRARY_IMPL(advrobust, CPU, m) { m.impl("linf_step", &linf_step_cpu); }

}  // namespace advrobust
