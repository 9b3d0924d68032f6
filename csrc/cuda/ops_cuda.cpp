// The CUDA backend of the advrobust ops: argument checks (shared with the CPU kernels,
// op_checks.h), device guard, current stream, contiguous inputs, dtype dispatch, then
// the raw-pointer launchers of csrc/cuda/*.cu (launchers.h). Compiled only in CUDA builds.
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "../kernel_math.h"
#include "../mmd_driver.h"
#include "../op_checks.h"
#include "launchers.h"

namespace advrobust {
namespace {

cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// linf_step and l2_step share their argument handling; `launch` picks the kernel.
template <typename Launch>
at::Tensor step_cuda(const char* op, const at::Tensor& x_adv, const at::Tensor& grad, const at::Tensor& x_nat,
                     const at::Tensor& alpha, const at::Tensor& eps, const c10::optional<at::Tensor>& lo,
                     const c10::optional<at::Tensor>& hi, const Launch& launch) {
  StepInputs in = prepare_step(op, x_adv, grad, x_nat, alpha, eps, lo, hi);  // checks first: a clear error
  const c10::cuda::CUDAGuard guard(x_adv.device());
  if (in.out.numel() == 0) return in.out;
  AT_DISPATCH_FLOATING_TYPES(x_adv.scalar_type(), "step_cuda", [&] { C10_CUDA_CHECK(launch(step_args<scalar_t>(in))); });
  return in.out;
}

at::Tensor linf_step_cuda(const at::Tensor& x_adv, const at::Tensor& grad, const at::Tensor& x_nat,
                          const at::Tensor& alpha, const at::Tensor& eps, const c10::optional<at::Tensor>& lo,
                          const c10::optional<at::Tensor>& hi) {
  return step_cuda("linf_step", x_adv, grad, x_nat, alpha, eps, lo, hi,
                   [](const auto& args) { return gpu::launch_linf_step(args, current_stream()); });
}

at::Tensor l2_step_cuda(const at::Tensor& x_adv, const at::Tensor& grad, const at::Tensor& x_nat,
                        const at::Tensor& alpha, const at::Tensor& eps, const c10::optional<at::Tensor>& lo,
                        const c10::optional<at::Tensor>& hi) {
  return step_cuda("l2_step", x_adv, grad, x_nat, alpha, eps, lo, hi, [&](const auto& args) {
    // per-(sample, chunk) (g.g, u.u, u.g) sums of the first pass, float64
    const int64_t chunks = gpu::l2_step_chunks(args.channels * args.inner);
    const at::Tensor partials = at::empty({args.batch, chunks, 3}, x_adv.options().dtype(at::kDouble));
    return gpu::launch_l2_step(args, partials.mutable_data_ptr<double>(), chunks, current_stream());
  });
}

at::Tensor de_trial_cuda(const at::Tensor& population, const at::Tensor& donors, const at::Tensor& cross_u,
                         const at::Tensor& cross_j, const at::Tensor& resample_u, const at::Tensor& lower,
                         const at::Tensor& upper, double F, double CR, bool resample) {
  check_de_trial_args(population, donors, cross_u, cross_j, resample_u, lower, upper);
  const c10::cuda::CUDAGuard guard(population.device());
  const int64_t B = population.size(0), P = population.size(1), D = population.size(2);
  auto out = at::empty({B, P, D}, population.options());
  if (out.numel() == 0) return out;
  const auto pop_c = population.contiguous(), don_c = donors.contiguous(), cu_c = cross_u.contiguous();
  const auto cj_c = cross_j.contiguous(), ru_c = resample_u.contiguous();
  const auto lo_c = lower.contiguous(), hi_c = upper.contiguous();
  AT_DISPATCH_FLOATING_TYPES(population.scalar_type(), "de_trial_cuda", [&] {
    gpu::DeTrialArgs<scalar_t> args{};
    args.population = pop_c.const_data_ptr<scalar_t>();
    args.donors = don_c.const_data_ptr<int64_t>();
    args.cross_u = cu_c.const_data_ptr<scalar_t>();
    args.cross_j = cj_c.const_data_ptr<int64_t>();
    args.resample_u = ru_c.const_data_ptr<scalar_t>();
    args.lower = lo_c.const_data_ptr<scalar_t>();
    args.upper = hi_c.const_data_ptr<scalar_t>();
    args.out = out.mutable_data_ptr<scalar_t>();
    args.batch = B;
    args.pop_size = P;
    args.genes = D;
    args.F = static_cast<scalar_t>(F);
    args.CR = static_cast<scalar_t>(CR);
    args.resample = resample;
    C10_CUDA_CHECK(gpu::launch_de_trial(args, current_stream()));
  });
  return out;
}

at::Tensor de_build_cuda(const at::Tensor& images, const at::Tensor& candidates, bool add) {
  check_de_build_args(images, candidates);
  const c10::cuda::CUDAGuard guard(images.device());
  const int64_t B = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3);
  const int64_t P = candidates.size(1), K = candidates.size(2);
  auto out = de_build_output(images, P);
  if (out.numel() == 0) return out;
  // The kernel writes (C, H, W) blocks; channels-last images get their layout back with one copy.
  const bool nhwc = de_build_channels_last(images);
  at::Tensor built = nhwc ? at::empty({B, P, C, H, W}, images.options()) : out;
  const auto img_c = images.contiguous(), cand_c = candidates.contiguous();
  AT_DISPATCH_FLOATING_TYPES(images.scalar_type(), "de_build_cuda", [&] {
    gpu::DeBuildArgs<scalar_t> args{};
    args.images = img_c.const_data_ptr<scalar_t>();
    args.candidates = cand_c.const_data_ptr<scalar_t>();
    args.out = built.mutable_data_ptr<scalar_t>();
    args.batch = B;
    args.pop_size = P;
    args.pixels = K;
    args.channels = C;
    args.height = H;
    args.width = W;
    args.add = add;
    C10_CUDA_CHECK(gpu::launch_de_build(args, current_stream()));
  });
  if (nhwc) out.copy_(built);
  return out;
}

void de_select_cuda(at::Tensor& population, at::Tensor& fitness, const at::Tensor& trial,
                    const at::Tensor& trial_fitness) {
  check_de_select_args(population, fitness, trial, trial_fitness);
  const c10::cuda::CUDAGuard guard(population.device());
  const int64_t BP = fitness.numel(), D = population.size(2);
  if (BP == 0) return;
  const auto tr_c = trial.contiguous(), tf_c = trial_fitness.contiguous();
  AT_DISPATCH_FLOATING_TYPES(population.scalar_type(), "de_select_cuda", [&] {
    gpu::DeSelectArgs<scalar_t> args{};
    args.population = population.mutable_data_ptr<scalar_t>();
    args.fitness = fitness.mutable_data_ptr<scalar_t>();
    args.trial = tr_c.const_data_ptr<scalar_t>();
    args.trial_fitness = tf_c.const_data_ptr<scalar_t>();
    args.candidates = BP;
    args.genes = D;
    C10_CUDA_CHECK(gpu::launch_de_select(args, current_stream()));
  });
}

// ------------------------------------------------------------ mk_mmd tiles (mmd_driver.h)

void forward_tile_cuda(const at::Tensor& dots, const at::Tensor& norms, int64_t row0, const MmdSetup& s,
                       at::Tensor& row_out) {
  const auto dots_c = dots.contiguous(), norms_c = norms.contiguous();
  TORCH_CHECK(row_out.is_contiguous() && row_out.scalar_type() == at::kDouble,
              "mk_mmd: row_out must be a contiguous float64 tensor");
  const int64_t rows = dots_c.size(0), cols = dots_c.size(1);
  if (rows == 0) return;
  const int64_t chunks = gpu::mmd_tile_chunks(cols);
  const at::Tensor partials = at::empty({rows, chunks, 2}, dots.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(dots.scalar_type(), "mk_mmd_forward_cuda", [&] {
    gpu::MmdForwardTileArgs<scalar_t> args{};
    args.dots = dots_c.const_data_ptr<scalar_t>();
    args.norms = norms_c.const_data_ptr<scalar_t>();
    args.partials = partials.mutable_data_ptr<double>();
    args.row_out = row_out.mutable_data_ptr<double>();
    args.rows = rows;
    args.cols = cols;
    args.row0 = row0;
    args.chunks = chunks;
    C10_CUDA_CHECK(gpu::launch_mmd_forward_tile(args, s, current_stream()));
  });
}

void backward_tile_cuda(at::Tensor& dots, const at::Tensor& norms, int64_t row0, const MmdSetup& s,
                        at::Tensor& row_sums) {
  TORCH_CHECK(dots.is_contiguous() && dots.size(1) == s.n_total - row0, "mk_mmd: the weight tile must "
              "be a contiguous (rows, ", s.n_total - row0, ") tensor, got ", dots.sizes(), " with strides ",
              dots.strides());
  TORCH_CHECK(row_sums.is_contiguous() && row_sums.numel() == dots.size(0) &&
                  row_sums.scalar_type() == dots.scalar_type(),
              "mk_mmd: row_sums must be contiguous with one value per tile row");
  const auto norms_c = norms.contiguous();
  const int64_t rows = dots.size(0);
  if (rows == 0) return;
  const int64_t cols = dots.size(1);
  const int64_t chunks = gpu::mmd_tile_chunks(cols);
  const at::Tensor partials = at::empty({rows, chunks}, dots.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(dots.scalar_type(), "mk_mmd_backward_cuda", [&] {
    gpu::MmdBackwardTileArgs<scalar_t> args{};
    args.dots = dots.mutable_data_ptr<scalar_t>();
    args.norms = norms_c.const_data_ptr<scalar_t>();
    args.partials = partials.mutable_data_ptr<double>();
    args.row_sums = row_sums.mutable_data_ptr<scalar_t>();
    args.rows = rows;
    args.cols = cols;
    args.row0 = row0;
    args.chunks = chunks;
    C10_CUDA_CHECK(gpu::launch_mmd_backward_tile(args, s, current_stream()));
  });
}

at::Tensor mk_mmd_cuda(const at::Tensor& x, const at::Tensor& y, at::ArrayRef<double> sigmas, bool unbiased) {
  check_mmd_args(x, y, sigmas, unbiased);  // before the guard: a clear message for a CPU x
  const c10::cuda::CUDAGuard guard(x.device());
  return mk_mmd_forward(x, y, sigmas, unbiased, &forward_tile_cuda);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> mk_mmd_with_grad_cuda(const at::Tensor& x, const at::Tensor& y,
                                                                     at::ArrayRef<double> sigmas, bool unbiased) {
  check_mmd_args(x, y, sigmas, unbiased);
  const c10::cuda::CUDAGuard guard(x.device());
  return mk_mmd_with_grad(x, y, sigmas, unbiased, &forward_tile_cuda, &backward_tile_cuda);
}

}  // namespace

TORCH_LIBRARY_IMPL(advrobust, CUDA, m) {
  m.impl("linf_step", &linf_step_cuda);
  m.impl("l2_step", &l2_step_cuda);
  m.impl("de_trial", &de_trial_cuda);
  m.impl("de_build", &de_build_cuda);
  m.impl("de_select_", &de_select_cuda);
  m.impl("mk_mmd", &mk_mmd_cuda);
  m.impl("mk_mmd_with_grad", &mk_mmd_with_grad_cuda);
}

}  // namespace advrobust
