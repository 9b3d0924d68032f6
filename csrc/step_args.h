// The arguments of linf_step / l2_step as raw pointers, shared by the CPU kernels and the
// CUDA launchers (plain C++, no torch). The input is viewed as (batch, channels, inner):
// element e of sample b, channel c sits at (b * channels + c) * inner + e.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernel_math.h"

namespace advrobust {

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
  int64_t batch, channels, inner;
  int64_t alpha_stride, eps_stride, lo_stride, hi_stride;

  ADVROBUST_HD T alpha_at(int64_t b) const { return alpha[b * alpha_stride]; }
  ADVROBUST_HD T eps_at(int64_t b) const { return eps[b * eps_stride]; }
  ADVROBUST_HD T lo_at(int64_t c) const { return lo ? lo[c * lo_stride] : -static_cast<T>(INFINITY); }
  ADVROBUST_HD T hi_at(int64_t c) const { return hi ? hi[c * hi_stride] : static_cast<T>(INFINITY); }
};

}  // namespace advrobust
