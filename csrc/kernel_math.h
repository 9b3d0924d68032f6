// Per-element helpers shared by every op family's CPU and CUDA kernels (each family's own
// formulas sit in its <family>_math.h: steps_math.h, de_math.h, mk_mmd_math.h).
//
// Everything here is plain C++ on scalars (no torch headers), so the CPU kernels, the
// CUDA kernels and nvcc's compile-only check all use the same lines.
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

// True for NaN and +-Inf: v - v is exactly 0 for every finite v and NaN otherwise. Written as
// one subtraction and one compare (no std::isfinite, no branch) so that a loop that also
// tests its inputs for NaN/Inf still vectorises.
template <typename T>
ADVROBUST_HD bool is_nonfinite(T v) {
  return !(v - v == T(0));
}

}  // namespace advrobust
