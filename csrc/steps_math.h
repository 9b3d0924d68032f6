// The linf_step / l2_step family's plain C++ (no torch), shared by the CPU kernels and the
// CUDA kernels: the per-element formulas and the arguments as raw pointers. The input is
// viewed as (batch, channels, inner): element e of sample b, channel c sits at
// (b * channels + c) * inner + e.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernel_math.h"

namespace advrobust {

// sign(v) in {-1, 0, +1}, sign(0) = 0 and sign(NaN) = NaN (torch.sign gives 0 for NaN; the
// twin keeps the NaN explicitly), so a NaN gradient gives a NaN step, not no step.
template <typename T>
ADVROBUST_HD T sign_of(T v) {
  const T s = static_cast<T>(T(0) < v) - static_cast<T>(v < T(0));
  return v != v ? v : s;
}

// linf_step, one element: clamp(clip(xa + alpha*sign(g), xn - eps, xn + eps), lo, hi).
// Absent lo/hi are passed as -inf/+inf.
template <typename T>
ADVROBUST_HD T linf_step_element(T xa, T g, T xn, T alpha, T eps, T lo, T hi) {
  T v = xa + alpha * sign_of(g);
  v = min_of(max_of(v, xn - eps), xn + eps);
  return min_of(max_of(v, lo), hi);
}

// l2_step, one element: xn + scale * ((xa - xn) + step * g), clamped to [lo, hi];
// step = alpha/||g|| (0 when ||g|| = 0), scale = min(1, eps/||d||) (see l2_step_coefficients).
template <typename T>
ADVROBUST_HD T l2_step_element(T xa, T g, T xn, T step, T scale, T lo, T hi) {
  T v = xn + scale * ((xa - xn) + step * g);
  return min_of(max_of(v, lo), hi);
}

// From per-sample sums gg = sum g^2, uu = sum u^2, ug = sum u*g with u = x_adv - x_nat:
// step = alpha/||g|| (0 if ||g|| = 0); ||d||^2 = uu + 2 step ug + step^2 gg for
// d = u + step*g; scale = eps/||d|| if ||d|| > eps else 1 (so eps = 0 projects onto x_nat).
// A NaN in the sample makes its sums NaN and then step and scale NaN (the comparisons are
// written so that NaN takes the division branch): the whole sample comes out NaN, as in the twin.
ADVROBUST_HD void l2_step_coefficients(double gg, double uu, double ug, double alpha, double eps,
                                       double* step, double* scale) {
  const double s = gg == 0.0 ? 0.0 : alpha / sqrt(gg);
  const double dd = max_of(uu + 2.0 * s * ug + s * s * gg, 0.0);
  const double dn = sqrt(dd);
  *step = s;
  *scale = dn <= eps ? 1.0 : eps / dn;
}

template <typename T>
struct StepArgs {
  const T* x_adv;
  const T* grad;
  const T* x_nat;
  const T* alpha;  // alpha[b * alpha_stride], stride 0 (one value) or 1 (per sample)
  const T* eps;    // eps[b * eps_stride]
  const T* lo;     // lo[c * lo_stride], or nullptr: no lower bound
  const T* hi;     // hi[c * hi_stride], or nullptr: no upper bound
  T* out;
  // nullptr, or a flag the kernel sets to 1 when x_nat holds a NaN or Inf (checked in its
  // own pass over x_nat: a direct call's check of its centre, at no extra pass)
  int32_t* x_nat_nonfinite;
  int64_t batch, channels, inner;
  int64_t alpha_stride, eps_stride, lo_stride, hi_stride;

  ADVROBUST_HD T alpha_at(int64_t b) const { return alpha[b * alpha_stride]; }
  ADVROBUST_HD T eps_at(int64_t b) const { return eps[b * eps_stride]; }
  ADVROBUST_HD T lo_at(int64_t c) const { return lo ? lo[c * lo_stride] : -static_cast<T>(INFINITY); }
  ADVROBUST_HD T hi_at(int64_t c) const { return hi ? hi[c * hi_stride] : static_cast<T>(INFINITY); }
};

}  // namespace advrobust
