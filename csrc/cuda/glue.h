// What every CUDA glue file needs: the torch side of a CUDA op (device guard, current
// stream, dtype dispatch, the shared checks of op_checks.h). Each op family's glue
// (<family>_glue.cpp) sits next to its kernels (*.cu), includes its own checks
// (../<family>_checks.h, shared with its CPU kernels) and launchers (<family>_launchers.h),
// and registers its ops for the CUDA dispatch key. CUDA builds only.
#pragma once

#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../op_checks.h"

namespace advrobust {

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

}  // namespace advrobust
