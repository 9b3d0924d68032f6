// The mk_mmd family's plain C++ (no torch), shared by the CPU tiles (cpu/mk_mmd.cpp), the
// CUDA tiles (cuda/mk_mmd.cu) and the device-independent driver (mmd_driver.*).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernel_math.h"

namespace advrobust {

// Kernel k(d2) = sum_k exp(c_k d2) with c_k = -1/(2 sigma_k^2) and d2 = ||a - b||^2.
// Its derivative factor w(d2) = 2 sum_k c_k exp(c_k d2): grad_a k = w(d2) (a - b).
constexpr int kMaxKernels = 64;

struct MmdParams {
  int num_kernels;
  double coef[kMaxKernels];  // c_k = -1/(2 sigma_k^2)
};

// Squared distance from the Gram identity, clamped at 0 against rounding (a NaN stays NaN).
// Only for i != j: rounding leaves ||z||^2 + ||z||^2 - 2 z.z of a point with itself at a few
// ulp of 2||z||^2, not 0, and with DeepAdversaries' widths down to sigma^2 = 1e-6
// (Ciprijanovic et al. 2022) exp(c_k d2) of that is far below 1: the biased MMD^2 was off by
// 2% for unit-scale float32 latents. The diagonal uses mmd_self_kernel instead.
template <typename T>
ADVROBUST_HD T mmd_sq_dist(T norm_a, T norm_b, T dot) {
  return max_of(norm_a + norm_b - T(2) * dot, T(0));
}

// k(z, z) = sum_k exp(0) = K, exactly (see mmd_sq_dist).
ADVROBUST_HD double mmd_self_kernel(const MmdParams& kp) { return static_cast<double>(kp.num_kernels); }

// exp(x) for float, x <= 0, branch-free so loops over it vectorise (Cephes-style:
// x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial, 2^n from the exponent bits);
// relative error below 2e-7; x < -87 gives 0 and NaN gives NaN (it used to give 0, which
// turned a NaN latent into a finite MMD). n is read from t's mantissa bits, not converted
// from float (a NaN there would make that conversion undefined). Doubles use exp() itself.
ADVROBUST_HD float exp_nonpositive(float x) {
#if defined(__CUDA_ARCH__)
  return __expf(x) * (x >= -87.0f);
#else
  const float xc = max_of(x, -87.0f);
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float t = xc * 1.44269504088896341f + magic;
  const float n = t - magic;
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  uint32_t t_bits;  // t = magic + n exactly, so its low mantissa bits hold n (two's complement)
  memcpy(&t_bits, &t, sizeof(t_bits));
  const uint32_t bits = (t_bits - 0x4B400000u + 127u) << 23;  // 0x4B400000 = bits of magic
  float scale;
  memcpy(&scale, &bits, sizeof(scale));
  return x < -87.0f ? 0.0f : p * scale;
#endif
}
ADVROBUST_HD double exp_nonpositive(double x) { return exp(x); }

// How one MMD^2 is weighted, for Z = cat(x, y) with rows [0, n_x) from x:
// MMD^2 = sum over ordered pairs (i, j) of a(i, j) k(z_i, z_j), with a = a_xx within x,
// a_yy within y and -a_xy across; the unbiased estimator leaves out i == j.
struct MmdSetup {
  MmdParams kernels;
  double a_xx, a_yy, a_xy;
  int64_t n_x, n_total;
  bool unbiased;
};

ADVROBUST_HD double mmd_pair_weight(const MmdSetup& s, bool i_in_x, bool j_in_x) {
  return i_in_x != j_in_x ? -s.a_xy : (i_in_x ? s.a_xx : s.a_yy);
}

}  // namespace advrobust
