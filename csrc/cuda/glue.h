// What every CUDA glue file needs: the torch side of a CUDA op (argument checks shared with
// the CPU kernels in op_checks.h, device guard, current stream, dtype dispatch) in front of
// the raw-pointer launchers of launchers.h. Each op family's glue (*_glue.cpp) sits next to
// its kernels (*.cu) and registers its ops for the CUDA dispatch key. CUDA builds only.
#pragma once

#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../kernel_math.h"
#include "../op_checks.h"
#include "launchers.h"

namespace advrobust {

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

}  // namespace advrobust
