// l2_step on the CPU, two passes: per-sample sums (g.g, u.u, u.g with u = x_adv - x_nat,
// accumulated in double), then one fused write pass with the per-sample step and scale.
#include <torch/library.h>

#include <limits>
#include <vector>

#include "../kernel_math.h"
#include "../op_checks.h"
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

template <typename T>
ADVROBUST_SIMD_CLONES void l2_row(const T* __restrict__ xa, const T* __restrict__ g, const T* __restrict__ xn,
                                  T* __restrict__ out, int64_t len, T step, T scale, T lo, T hi) {
  for (int64_t i = 0; i < len; ++i) out[i] = l2_step_element(xa[i], g[i], xn[i], step, scale, lo, hi);
}

at::Tensor l2_step_cpu(const at::Tensor& x_adv, const at::Tensor& grad, const at::Tensor& x_nat,
                       const at::Tensor& alpha, const at::Tensor& eps, const c10::optional<at::Tensor>& lo,
                       const c10::optional<at::Tensor>& hi) {
  const StepLayout L = check_step_args("l2_step", x_adv, grad, x_nat, alpha, eps, lo, hi);
  auto out = at::empty(x_adv.sizes(), x_adv.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const auto xa_c = x_adv.contiguous(), g_c = grad.contiguous(), xn_c = x_nat.contiguous();
  const auto alpha_c = alpha.contiguous(), eps_c = eps.contiguous();
  const auto lo_c = lo.has_value() ? lo->contiguous() : at::Tensor();
  const auto hi_c = hi.has_value() ? hi->contiguous() : at::Tensor();
  const int64_t rows = L.batch * L.channels;
  std::vector<L2Sums> row_sums(rows);
  AT_DISPATCH_FLOATING_TYPES(x_adv.scalar_type(), "l2_step_cpu", [&] {
    const scalar_t* xa = xa_c.const_data_ptr<scalar_t>();
    const scalar_t* g = g_c.const_data_ptr<scalar_t>();
    const scalar_t* xn = xn_c.const_data_ptr<scalar_t>();
    const scalar_t* a = alpha_c.const_data_ptr<scalar_t>();
    const scalar_t* e = eps_c.const_data_ptr<scalar_t>();
    const scalar_t* lo_p = lo_c.defined() ? lo_c.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* hi_p = hi_c.defined() ? hi_c.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    const scalar_t inf = std::numeric_limits<scalar_t>::infinity();
    parallel_over(rows, L.inner, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        row_sums[r] = l2_row_sums<scalar_t>(xa + r * L.inner, g + r * L.inner, xn + r * L.inner, L.inner);
      }
    });
    std::vector<scalar_t> step(L.batch), scale(L.batch);
    for (int64_t b = 0; b < L.batch; ++b) {
      L2Sums s;
      for (int64_t c = 0; c < L.channels; ++c) {  // fixed order: deterministic
        const L2Sums& p = row_sums[b * L.channels + c];
        s.gg += p.gg, s.uu += p.uu, s.ug += p.ug;
      }
      double st, sc;
      l2_step_coefficients(s.gg, s.uu, s.ug, a[b * L.alpha_stride], e[b * L.eps_stride], &st, &sc);
      step[b] = static_cast<scalar_t>(st);
      scale[b] = static_cast<scalar_t>(sc);
    }
    parallel_over(rows, L.inner, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / L.channels, c = r % L.channels, off = r * L.inner;
        l2_row<scalar_t>(xa + off, g + off, xn + off, o + off, L.inner, step[b], scale[b],
                         lo_p ? lo_p[c * L.lo_stride] : -inf, hi_p ? hi_p[c * L.hi_stride] : inf);
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(advrobust, CPU, m) { m.impl("l2_step", &l2_step_cpu); }

}  // namespace advrobust
