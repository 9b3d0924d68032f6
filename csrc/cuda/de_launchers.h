// Host-side entry points of the differential-evolution CUDA kernels (de.cu), called by
// their torch glue (de_glue.cpp).
// Plain C++ with no torch headers (raw pointers in small params structs, a cudaStream_t, a
// cudaError_t back: the launch check, cudaGetLastError() after the launches), so the .cu
// files compile with plain nvcc. Every launcher is explicitly instantiated for float and
// double in its .cu file. All tensors are contiguous, row-major, on the current device;
// sizes are 64-bit.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace advrobust {
namespace gpu {

template <typename T>
struct DeTrialArgs {
  const T* population;    // (B, P, D)
  const int64_t* donors;  // (B, P, 3), validated in [0, P) by the glue
  const T* cross_u;       // (B, P, D)
  const int64_t* cross_j; // (B, P)
  const T* resample_u;    // (B, P, D)
  const T* lower;         // (D,)
  const T* upper;         // (D,)
  T* out;                 // (B, P, D)
  int64_t batch, pop_size, genes;
  T F, CR;
  bool resample;
};

template <typename T>
cudaError_t launch_de_trial(const DeTrialArgs<T>& args, cudaStream_t stream);

template <typename T>
struct DeBuildArgs {
  const T* images;      // (B, C, H, W)
  const T* candidates;  // (B, P, K, 2 + C)
  T* out;               // (B, P, C, H, W)
  int64_t batch, pop_size, pixels, channels, height, width;
  bool add;
};

template <typename T>
cudaError_t launch_de_build(const DeBuildArgs<T>& args, cudaStream_t stream);

template <typename T>
struct DeSelectArgs {
  T* population;           // (B*P, D), updated in place
  T* fitness;              // (B*P,), updated in place
  const T* trial;          // (B*P, D)
  const T* trial_fitness;  // (B*P,)
  int64_t candidates, genes;
};

template <typename T>
cudaError_t launch_de_select(const DeSelectArgs<T>& args, cudaStream_t stream);

}  // namespace gpu
}  // namespace advrobust
