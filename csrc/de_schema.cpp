// The one-pixel differential-evolution family's schemas: de_trial, de_build, de_select_
// (kernels: cpu/de.cpp, cuda/de.cu + cuda/de_glue.cpp; Python wrappers, fake kernels:
// advrobust/ops/de.py).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(advrobust, m) {
  m.def(
      "de_trial(Tensor population, Tensor donors, Tensor cross_u, Tensor cross_j, Tensor resample_u, "
      "Tensor lower, Tensor upper, float F, float CR, bool resample) -> Tensor");
  m.def("de_build(Tensor images, Tensor candidates, bool add) -> Tensor");
  m.def("de_select_(Tensor(a!) population, Tensor(b!) fitness, Tensor trial, Tensor trial_fitness) -> ()");
}
