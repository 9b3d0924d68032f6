// The attack-step family's schemas: linf_step and l2_step (kernels: cpu/linf_step.cpp,
// cpu/l2_step.cpp, cuda/linf_step.cu, cuda/l2_step.cu + cuda/steps_glue.cpp; Python wrapper,
// fake kernels: advrobust/ops/steps.py). check_x_nat: the kernel also tests x_nat for
// NaN/Inf in its own pass and raises a ValueError naming the samples (a direct call's check).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(advrobust, m) {
  m.def("linf_step(Tensor x_adv, Tensor grad, Tensor x_nat, Tensor alpha, Tensor eps, Tensor? lo, Tensor? hi, "
        "bool check_x_nat=False) -> Tensor");
  m.def("l2_step(Tensor x_adv, Tensor grad, Tensor x_nat, Tensor alpha, Tensor eps, Tensor? lo, Tensor? hi, "
        "bool check_x_nat=False) -> Tensor");
}
