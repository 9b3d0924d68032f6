// The MMD family's schemas: mk_mmd and the private _mk_mmd_with_grad, its value and gradient
// in one pass (kernels: mmd_driver.cpp with the tiles of cpu/mk_mmd.cpp and cuda/mk_mmd.cu +
// cuda/mk_mmd_glue.cpp; Python wrapper, fake kernels, autograd: advrobust/ops/mmd.py).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(advrobust, m) {
  m.def("mk_mmd(Tensor x, Tensor y, float[] sigmas, bool unbiased) -> Tensor");
  m.def("_mk_mmd_with_grad(Tensor x, Tensor y, float[] sigmas, bool unbiased) -> (Tensor, Tensor, Tensor)");
}
