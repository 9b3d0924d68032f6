// Per-element math shared by the CPU and CUDA kernels of advrobust.
//
// Everything here is plain C++ on scalars (no torch headers), so the CPU kernels, the
// CUDA kernels and nvcc's compile-only check all use the same lines. Each function says
// which operator and which formula it implements.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define ADVROBUST_HD __host__ __device__ __forceinline__
#else
#define ADVROBUST_HD inline
#endif

namespace advrobust {

// min / max with torch.minimum / torch.maximum's NaN rule: a NaN in either argument is the
// result (the plain `b < a ? b : a` dropped a NaN b). Written as two plain selects: GCC turns
// `(b < a || b != b) ? b : a` into control flow and then vectorises no loop that uses it
// (linf_step ran 50x slower); for integers `b != b` is false and folds away.
template <typename T>
ADVROBUST_HD T min_of(T a, T b) {
  const T m = b < a ? b : a;
  return b != b ? b : m;
}
template <typename T>
ADVROBUST_HD T max_of(T a, T b) {
  const T m = a < b ? b : a;
  return b != b ? b : m;
}

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

// de_trial, one gene of DE/rand/1/bin: mutant = a + F (b - c); out of [lo, hi] it is
// redrawn as lo + r (hi - lo) (resample) or clipped; crossover keeps the parent's gene
// unless u < CR or this is the forced gene.
template <typename T>
ADVROBUST_HD T de_trial_gene(T parent, T a, T b, T c, T F, T CR, T u, bool forced, T r, T lo, T hi,
                             bool resample) {
  T mutant = a + F * (b - c);
  if (mutant < lo || mutant > hi) {
    mutant = resample ? lo + r * (hi - lo) : min_of(max_of(mutant, lo), hi);
  }
  return (u < CR || forced) ? mutant : parent;
}

// de_build: a gene holding a row or column (pixel units, continuous) -> pixel index in [0, size).
template <typename T>
ADVROBUST_HD int64_t de_pixel_index(T gene, int64_t size) {
  const T f = floor(gene);
  if (!(f > T(0))) return 0;  // also catches NaN
  if (f >= static_cast<T>(size - 1)) return size - 1;
  return static_cast<int64_t>(f);
}

// ---------------------------------------------------------------- mk_mmd
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

}  // namespace advrobust

namespace advrobust {

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
