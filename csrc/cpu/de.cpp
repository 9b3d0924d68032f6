// One-pixel differential evolution on the CPU: trial vectors, perturbed images, selection.
// All random numbers come in as tensors, so the results are deterministic and equal
// to the CUDA kernels' bit for bit.
#include <torch/library.h>

#include <cstring>

#include "../de_checks.h"
#include "../de_math.h"
#include "simd.h"

namespace advrobust {
namespace {

at::Tensor de_trial_cpu(const at::Tensor& population, const at::Tensor& donors, const at::Tensor& cross_u,
                        const at::Tensor& cross_j, const at::Tensor& resample_u, const at::Tensor& lower,
                        const at::Tensor& upper, double F, double CR, bool resample) {
  check_de_trial_args(population, donors, cross_u, cross_j, resample_u, lower, upper);
  const int64_t B = population.size(0), P = population.size(1), D = population.size(2);
  auto out = at::empty({B, P, D}, population.options());
  if (out.numel() == 0) return out;
  const auto pop_c = population.contiguous(), don_c = donors.contiguous(), cu_c = cross_u.contiguous();
  const auto cj_c = cross_j.contiguous(), ru_c = resample_u.contiguous();
  const auto lo_c = lower.contiguous(), hi_c = upper.contiguous();
  const int64_t* don = don_c.const_data_ptr<int64_t>();
  const int64_t* cj = cj_c.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(population.scalar_type(), "de_trial_cpu", [&] {
    const scalar_t* pop = pop_c.const_data_ptr<scalar_t>();
    const scalar_t* cu = cu_c.const_data_ptr<scalar_t>();
    const scalar_t* ru = ru_c.const_data_ptr<scalar_t>();
    const scalar_t* lo = lo_c.const_data_ptr<scalar_t>();
    const scalar_t* hi = hi_c.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    const scalar_t f = static_cast<scalar_t>(F), cr = static_cast<scalar_t>(CR);
    parallel_over(B * P, D, [&](int64_t begin, int64_t end) {
      for (int64_t bp = begin; bp < end; ++bp) {
        const int64_t b = bp / P;
        const scalar_t* r1 = pop + (b * P + don[bp * 3 + 0]) * D;
        const scalar_t* r2 = pop + (b * P + don[bp * 3 + 1]) * D;
        const scalar_t* r3 = pop + (b * P + don[bp * 3 + 2]) * D;
        const scalar_t* parent = pop + bp * D;
        for (int64_t j = 0; j < D; ++j) {
          o[bp * D + j] = de_trial_gene(parent[j], r1[j], r2[j], r3[j], f, cr, cu[bp * D + j], j == cj[bp],
                                        ru[bp * D + j], lo[j], hi[j], resample);
        }
      }
    });
  });
  return out;
}

at::Tensor de_build_cpu(const at::Tensor& images, const at::Tensor& candidates, bool add) {
  check_de_build_args(images, candidates);
  const int64_t B = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3);
  const int64_t P = candidates.size(1), K = candidates.size(2), G = C + 2, HW = H * W;
  auto out = de_build_output(images, P);
  if (out.numel() == 0) return out;
  // Channel c of pixel p sits at c * HW + p in a (C, H, W) block, at p * C + c in an (H, W, C) one.
  const bool nhwc = de_build_channels_last(images);
  const int64_t pixel_stride = nhwc ? C : 1, channel_stride = nhwc ? 1 : HW;
  const auto img_c = nhwc ? images : images.contiguous(), cand_c = candidates.contiguous();
  AT_DISPATCH_FLOATING_TYPES(images.scalar_type(), "de_build_cpu", [&] {
    const scalar_t* img = img_c.const_data_ptr<scalar_t>();
    const scalar_t* cand = cand_c.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    parallel_over(B * P, C * HW, [&](int64_t begin, int64_t end) {
      for (int64_t bp = begin; bp < end; ++bp) {
        const int64_t b = bp / P;
        scalar_t* dst = o + bp * C * HW;
        std::memcpy(dst, img + b * C * HW, sizeof(scalar_t) * C * HW);
        for (int64_t k = 0; k < K; ++k) {  // in order: a later pixel wins where two coincide
          const scalar_t* gene = cand + (bp * K + k) * G;
          const int64_t pix = de_pixel_index(gene[0], H) * W + de_pixel_index(gene[1], W);
          for (int64_t c = 0; c < C; ++c) {
            scalar_t& v = dst[pix * pixel_stride + c * channel_stride];
            v = add ? v + gene[2 + c] : gene[2 + c];
          }
        }
      }
    });
  });
  return out;
}

void de_select_cpu(at::Tensor& population, at::Tensor& fitness, const at::Tensor& trial,
                   const at::Tensor& trial_fitness) {
  check_de_select_args(population, fitness, trial, trial_fitness);
  const int64_t BP = fitness.numel(), D = population.size(2);
  if (BP == 0) return;
  const auto tr_c = trial.contiguous(), tf_c = trial_fitness.contiguous();
  AT_DISPATCH_FLOATING_TYPES(population.scalar_type(), "de_select_cpu", [&] {
    scalar_t* pop = population.mutable_data_ptr<scalar_t>();
    scalar_t* fit = fitness.mutable_data_ptr<scalar_t>();
    const scalar_t* tr = tr_c.const_data_ptr<scalar_t>();
    const scalar_t* tf = tf_c.const_data_ptr<scalar_t>();
    parallel_over(BP, D, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        if (tf[i] <= fit[i]) {
          fit[i] = tf[i];
          std::memcpy(pop + i * D, tr + i * D, sizeof(scalar_t) * D);
        }
      }
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(advrobust, CPU, m) {
  m.impl("de_trial", &de_trial_cpu);
  m.impl("de_build", &de_build_cpu);
  m.impl("de_select_", &de_select_cpu);
}

}  // namespace advrobust
