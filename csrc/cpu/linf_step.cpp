// linf_step on the CPU: one pass over (B*C) rows of S elements, rows spread over threads.
#include <torch/library.h>

#include "../kernel_math.h"
#include "../op_checks.h"
#include "simd.h"

namespace advrobust {
namespace {

template <typename T>
ADVROBUST_SIMD_CLONES void linf_row(const T* __restrict__ xa, const T* __restrict__ g, const T* __restrict__ xn,
                                    T* __restrict__ out, int64_t len, T alpha, T eps, T lo, T hi) {
  for (int64_t i = 0; i < len; ++i) out[i] = linf_step_element(xa[i], g[i], xn[i], alpha, eps, lo, hi);
}

at::Tensor linf_step_cpu(const at::Tensor& x_adv, const at::Tensor& grad, const at::Tensor& x_nat,
                         const at::Tensor& alpha, const at::Tensor& eps, const c10::optional<at::Tensor>& lo,
                         const c10::optional<at::Tensor>& hi) {
  StepInputs in = prepare_step("linf_step", x_adv, grad, x_nat, alpha, eps, lo, hi);
  if (in.out.numel() == 0) return in.out;
  AT_DISPATCH_FLOATING_TYPES(x_adv.scalar_type(), "linf_step_cpu", [&] {
    const StepArgs<scalar_t> p = step_args<scalar_t>(in);
    parallel_over(p.batch * p.channels, p.inner, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / p.channels, c = r % p.channels, off = r * p.inner;
        linf_row<scalar_t>(p.x_adv + off, p.grad + off, p.x_nat + off, p.out + off, p.inner, p.alpha_at(b),
                           p.eps_at(b), p.lo_at(c), p.hi_at(c));
      }
    });
  });
  return in.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(advrobust, CPU, m) { m.impl("linf_step", &linf_step_cpu); }

}  // namespace advrobust
