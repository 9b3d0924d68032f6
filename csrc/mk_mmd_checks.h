// The mk_mmd family's argument checks (the driver, mmd_driver.cpp, and the CUDA glue run them).
#pragma once

#include <torch/types.h>

#include <cmath>

#include "mk_mmd_math.h"
#include "op_checks.h"

namespace advrobust {

inline void check_mmd_args(const at::Tensor& x, const at::Tensor& y, at::ArrayRef<double> sigmas, bool unbiased) {
  constexpr const char* op = "mk_mmd";
  check_float_tensor(op, "x", x);
  TORCH_CHECK(x.dim() == 2 && y.dim() == 2, op, ": x and y must be (n, d) and (m, d), got ", x.sizes(), " and ",
              y.sizes());
  TORCH_CHECK(x.size(1) == y.size(1), op, ": x has ", x.size(1), " features, y has ", y.size(1));
  TORCH_CHECK(x.scalar_type() == y.scalar_type() && x.device() == y.device(), op,
              ": x and y must share dtype and device");
  const int64_t min_n = unbiased ? 2 : 1;
  TORCH_CHECK(x.size(0) >= min_n && y.size(0) >= min_n, op, ": needs at least ", min_n, " samples in x and y, got ",
              x.size(0), " and ", y.size(0));
  TORCH_CHECK(!sigmas.empty() && static_cast<int64_t>(sigmas.size()) <= kMaxKernels, op,
              ": needs 1 to ", kMaxKernels, " kernel widths, got ", sigmas.size());
  for (double s : sigmas) TORCH_CHECK(s > 0 && std::isfinite(s), op, ": every sigma must be finite and > 0, got ", s);
}

}  // namespace advrobust
