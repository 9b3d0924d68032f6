// The argument checks every op family uses (each family's own checks, shared by its CPU
// kernels and its CUDA glue, sit in its <family>_checks.h). The Python wrappers in
// advrobust/ops check the same things with friendlier messages; these TORCH_CHECKs guard
// direct calls of torch.ops.advrobust.*.
#pragma once

#include <torch/types.h>

namespace advrobust {

inline void check_float_tensor(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": ", name,
              " must be float32 or float64, got ", t.scalar_type());
}

inline void check_like(const char* op, const char* name, const at::Tensor& t, const at::Tensor& ref) {
  TORCH_CHECK(t.sizes() == ref.sizes(), op, ": ", name, " has shape ", t.sizes(), ", expected ", ref.sizes());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": ", name, " is ", t.scalar_type(), ", expected ",
              ref.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " is on ", t.device(), ", expected ", ref.device());
}

}  // namespace advrobust
