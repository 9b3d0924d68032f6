// Host-side entry points of the CUDA kernels (csrc/cuda/*.cu), called by the torch glue
// in ops_cuda.cpp. Plain C++: raw pointers in small params structs, a cudaStream_t, and a
// cudaError_t back (the launch check: cudaGetLastError() after the launches), so the
// .cu files compile with plain nvcc and no torch headers. Every launcher is explicitly
// instantiated for float and double in its .cu file.
//
// All tensors are contiguous, row-major, on the current device; sizes are 64-bit.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "../kernel_math.h"
#include "../step_args.h"

namespace advrobust {
namespace gpu {

// ------------------------------------------------------------ linf_step / l2_step
// StepArgs (../step_args.h): the pointers and the (batch, channels, inner) layout.
template <typename T>
cudaError_t launch_linf_step(const StepArgs<T>& args, cudaStream_t stream);

// l2_step's first pass splits each sample into this many chunks; the glue allocates the
// (batch, chunks, 3) float64 scratch buffer of per-chunk (g.g, u.u, u.g) sums.
int64_t l2_step_chunks(int64_t per_sample);

template <typename T>
cudaError_t launch_l2_step(const StepArgs<T>& args, double* partials, int64_t chunks, cudaStream_t stream);

// ------------------------------------------------------------ differential evolution
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

// ------------------------------------------------------------ mk_mmd tiles
// The tile semantics are those of MmdForwardTileFn / MmdBackwardTileFn in mmd_driver.h.
// Each row's columns are split into `chunks` pieces (so a tile of few, long rows still
// fills the GPU); per-chunk sums go to a float64 scratch buffer and a second kernel adds
// them per row in a fixed order, so results are deterministic.
int64_t mmd_tile_chunks(int64_t cols);

template <typename T>
struct MmdForwardTileArgs {
  const T* dots;      // (rows, cols): z_i . z_j for i = row0 + r, j = row0 + col
  const T* norms;     // (n_total,)
  double* partials;   // scratch, rows * chunks * 2
  double* row_out;    // (n_total,): row_out[row0 + r] is written
  int64_t rows, cols, row0, chunks;
};

template <typename T>
cudaError_t launch_mmd_forward_tile(const MmdForwardTileArgs<T>& args, const MmdSetup& setup,
                                    cudaStream_t stream);

template <typename T>
struct MmdBackwardTileArgs {
  T* dots;            // (rows, cols = n_total - row0): dots of j = row0 + c in, pair weights W out
  const T* norms;     // (n_total,)
  double* partials;   // scratch, rows * chunks
  T* row_sums;        // (rows,)
  int64_t rows, cols, row0, chunks;
};

template <typename T>
cudaError_t launch_mmd_backward_tile(const MmdBackwardTileArgs<T>& args, const MmdSetup& setup,
                                     cudaStream_t stream);

}  // namespace gpu
}  // namespace advrobust
