// The one-pixel differential-evolution family's per-gene formulas (plain C++, no torch),
// shared by the CPU kernels (cpu/de.cpp) and the CUDA kernels (cuda/de.cu).
#pragma once

#include <cmath>
#include <cstdint>

#include "kernel_math.h"

namespace advrobust {

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

}  // namespace advrobust
