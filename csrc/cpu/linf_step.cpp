// linf_step on the CPU: one pass over (B*C) rows of S elements, rows spread over threads.
#include <torch/library.h>

#include <limits>

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
  const StepLayout L = check_step_args("linf_step", x_adv, grad, x_nat, alpha, eps, lo, hi);
  auto out = at::empty(x_adv.sizes(), x_adv.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const auto xa_c = x_adv.contiguous(), g_c = grad.contiguous(), xn_c = x_nat.contiguous();
  const auto alpha_c = alpha.contiguous(), eps_c = eps.contiguous();
  const auto lo_c = lo.has_value() ? lo->contiguous() : at::Tensor();
  const auto hi_c = hi.has_value() ? hi->contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(x_adv.scalar_type(), "linf_step_cpu", [&] {
    const scalar_t* xa = xa_c.const_data_ptr<scalar_t>();
    const scalar_t* g = g_c.const_data_ptr<scalar_t>();
    const scalar_t* xn = xn_c.const_data_ptr<scalar_t>();
    const scalar_t* a = alpha_c.const_data_ptr<scalar_t>();
    const scalar_t* e = eps_c.const_data_ptr<scalar_t>();
    const scalar_t* lo_p = lo_c.defined() ? lo_c.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* hi_p = hi_c.defined() ? hi_c.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    const scalar_t inf = std::numeric_limits<scalar_t>::infinity();
    parallel_over(L.batch * L.channels, L.inner, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / L.channels, c = r % L.channels, off = r * L.inner;
        linf_row<scalar_t>(xa + off, g + off, xn + off, o + off, L.inner, a[b * L.alpha_stride],
                           e[b * L.eps_stride], lo_p ? lo_p[c * L.lo_stride] : -inf,
                           hi_p ? hi_p[c * L.hi_stride] : inf);
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(advrobust, CPU, m) { m.impl("linf_step", &linf_step_cpu); }

}  // namespace advrobust
