// Compile-time helpers for the CPU kernels.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

// The inner loops are written to vectorise. On x86-64 with GCC, each function marked
// ADVROBUST_SIMD_CLONES is compiled three times (AVX-512, AVX2, baseline SSE2) and the
// loader picks the widest one the machine has, so one wheel runs everywhere.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define ADVROBUST_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ADVROBUST_SIMD_CLONES
#endif

namespace advrobust {

// Runs body(begin, end) over [0, n) in parallel chunks of at least `grain` items, where
// each item costs about `work_per_item` element operations (so small inputs stay serial).
template <typename F>
void parallel_over(int64_t n, int64_t work_per_item, const F& body) {
  constexpr int64_t kMinWorkPerChunk = 1 << 15;
  const int64_t grain = std::max<int64_t>(1, kMinWorkPerChunk / std::max<int64_t>(1, work_per_item));
  at::parallel_for(0, n, grain, body);
}

}  // namespace advrobust
