// CUDA glue of the differential-evolution ops de_trial, de_build, de_select_ (kernels: de.cu).
#include "glue.h"

#include "../de_checks.h"
#include "de_launchers.h"

namespace advrobust {
namespace {

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

}  // namespace

TORCH_LIBRARY_IMPL(advrobust, CUDA, m) {
  m.impl("de_trial", &de_trial_cuda);
  m.impl("de_build", &de_build_cuda);
  m.impl("de_select_", &de_select_cuda);
}

}  // namespace advrobust
