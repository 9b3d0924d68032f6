// Host-side entry points of the mk_mmd CUDA tiles (mk_mmd.cu), called by their torch glue
// (mk_mmd_glue.cpp).
// Plain C++ with no torch headers (raw pointers in small params structs, a cudaStream_t, a
// cudaError_t back: the launch check, cudaGetLastError() after the launches), so the .cu
// files compile with plain nvcc. Every launcher is explicitly instantiated for float and
// double in its .cu file. All tensors are contiguous, row-major, on the current device;
// sizes are 64-bit.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "../mk_mmd_math.h"

namespace advrobust {
namespace gpu {

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
