// CUDA glue of linf_step and l2_step (kernels: linf_step.cu, l2_step.cu).
#include "glue.h"

#include "../steps_checks.h"
#include "steps_launchers.h"

namespace advrobust {
namespace {

// linf_step and l2_step share their argument handling; `launch` picks the kernel.
// With check_x_nat, the kernels set a device flag when they read a NaN/Inf x_nat and
// finish_step reads it back (one synchronisation, as a direct call's check always had).
template <typename Launch>
at::Tensor step_cuda(const char* op, const at::Tensor& x_adv, const at::Tensor& grad, const at::Tensor& x_nat,
                     const at::Tensor& alpha, const at::Tensor& eps, const c10::optional<at::Tensor>& lo,
                     const c10::optional<at::Tensor>& hi, bool check_x_nat, const Launch& launch) {
  StepInputs in = prepare_step(op, x_adv, grad, x_nat, alpha, eps, lo, hi, check_x_nat);  // checks first: a clear error
  const c10::cuda::CUDAGuard guard(x_adv.device());
  if (in.out.numel() == 0) return in.out;
  AT_DISPATCH_FLOATING_TYPES(x_adv.scalar_type(), "step_cuda", [&] { C10_CUDA_CHECK(launch(step_args<scalar_t>(in))); });
  return finish_step(op, in);
}

at::Tensor linf_step_cuda(const at::Tensor& x_adv, const at::Tensor& grad, const at::Tensor& x_nat,
                          const at::Tensor& alpha, const at::Tensor& eps, const c10::optional<at::Tensor>& lo,
                          const c10::optional<at::Tensor>& hi, bool check_x_nat) {
  return step_cuda("linf_step", x_adv, grad, x_nat, alpha, eps, lo, hi, check_x_nat,
                   [](const auto& args) { return gpu::launch_linf_step(args, current_stream()); });
}

at::Tensor l2_step_cuda(const at::Tensor& x_adv, const at::Tensor& grad, const at::Tensor& x_nat,
                        const at::Tensor& alpha, const at::Tensor& eps, const c10::optional<at::Tensor>& lo,
                        const c10::optional<at::Tensor>& hi, bool check_x_nat) {
  return step_cuda("l2_step", x_adv, grad, x_nat, alpha, eps, lo, hi, check_x_nat, [&](const auto& args) {
    // per-(sample, chunk) (g.g, u.u, u.g) sums of the first pass, float64
    const int64_t chunks = gpu::l2_step_chunks(args.channels * args.inner);
    const at::Tensor partials = at::empty({args.batch, chunks, 3}, x_adv.options().dtype(at::kDouble));
    return gpu::launch_l2_step(args, partials.mutable_data_ptr<double>(), chunks, current_stream());
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(advrobust, CUDA, m) {
  m.impl("linf_step", &linf_step_cuda);
  m.impl("l2_step", &l2_step_cuda);
}

}  // namespace advrobust
