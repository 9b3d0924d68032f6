// The differential-evolution family's argument checks and output layout, shared by the CPU
// kernels (cpu/de.cpp) and the CUDA glue (cuda/de_glue.cpp).
#pragma once

#include <torch/types.h>

#include "op_checks.h"

namespace advrobust {

// DE: population (B, P, D), donors (B, P, 3) int64, cross_u/resample_u (B, P, D),
// cross_j (B, P) int64, lower/upper (D,).
inline void check_de_trial_args(const at::Tensor& pop, const at::Tensor& donors, const at::Tensor& cross_u,
                                const at::Tensor& cross_j, const at::Tensor& resample_u, const at::Tensor& lower,
                                const at::Tensor& upper) {
  constexpr const char* op = "de_trial";
  check_float_tensor(op, "population", pop);
  TORCH_CHECK(pop.dim() == 3, op, ": population must be (B, P, D), got ", pop.sizes());
  const int64_t B = pop.size(0), P = pop.size(1), D = pop.size(2);
  TORCH_CHECK(donors.sizes() == at::IntArrayRef({B, P, 3}) && donors.scalar_type() == at::kLong, op,
              ": donors must be int64 (B, P, 3), got ", donors.scalar_type(), " ", donors.sizes());
  TORCH_CHECK(cross_j.sizes() == at::IntArrayRef({B, P}) && cross_j.scalar_type() == at::kLong, op,
              ": cross_j must be int64 (B, P), got ", cross_j.scalar_type(), " ", cross_j.sizes());
  check_like(op, "cross_u", cross_u, pop);
  check_like(op, "resample_u", resample_u, pop);
  TORCH_CHECK(donors.device() == pop.device() && cross_j.device() == pop.device(), op,
              ": donors and cross_j must be on population's device");
  for (const auto* b : {&lower, &upper}) {
    TORCH_CHECK(b->dim() == 1 && b->size(0) == D && b->scalar_type() == pop.scalar_type() &&
                    b->device() == pop.device(),
                op, ": lower/upper must be (D,) = (", D, ",) of population's dtype and device, got ", b->sizes());
  }
  TORCH_CHECK(P >= 4 || B == 0, op, ": DE/rand/1 needs a population of at least 4, got ", P);
  // Donor indices address memory and may come from users: check their range (on a GPU this
  // copies two numbers to the host, a synchronisation).
  if (donors.numel() > 0) {
    const auto min_max = at::stack({donors.min(), donors.max()}).cpu();
    const int64_t lo = min_max[0].item<int64_t>(), hi = min_max[1].item<int64_t>();
    TORCH_CHECK(lo >= 0 && hi < P, op, ": donors must lie in [0, P) = [0, ", P, "), got values in [", lo, ", ",
                hi, "]");
  }
}

inline void check_de_build_args(const at::Tensor& images, const at::Tensor& candidates) {
  constexpr const char* op = "de_build";
  check_float_tensor(op, "images", images);
  TORCH_CHECK(images.dim() == 4, op, ": images must be (B, C, H, W), got ", images.sizes());
  TORCH_CHECK(candidates.dim() == 4 && candidates.size(0) == images.size(0) &&
                  candidates.size(3) == images.size(1) + 2,
              op, ": candidates must be (B, P, k, 2 + C) = (", images.size(0), ", P, k, ", images.size(1) + 2,
              "), got ", candidates.sizes());
  TORCH_CHECK(candidates.scalar_type() == images.scalar_type() && candidates.device() == images.device(), op,
              ": candidates must have the images' dtype and device");
}

// de_build's output follows the images' memory format: channels-last images (a contiguous
// (B, H, W, C) block; C > 1) give (B, P, C, H, W) candidates whose (B*P, C, H, W) view is
// channels-last too, so a model that runs channels-last gets them without a copy.
inline bool de_build_channels_last(const at::Tensor& images) {
  return images.size(1) > 1 && !images.is_contiguous() &&
         images.is_contiguous(at::MemoryFormat::ChannelsLast);
}

inline at::Tensor de_build_output(const at::Tensor& images, int64_t P) {
  const int64_t B = images.size(0), C = images.size(1), H = images.size(2), W = images.size(3);
  if (de_build_channels_last(images)) {
    return at::empty_strided({B, P, C, H, W}, {P * C * H * W, C * H * W, 1, W * C, C}, images.options());
  }
  return at::empty({B, P, C, H, W}, images.options());
}

inline void check_de_select_args(const at::Tensor& pop, const at::Tensor& fit, const at::Tensor& trial,
                                 const at::Tensor& trial_fit) {
  constexpr const char* op = "de_select_";
  check_float_tensor(op, "population", pop);
  TORCH_CHECK(pop.dim() == 3, op, ": population must be (B, P, D), got ", pop.sizes());
  check_like(op, "trial", trial, pop);
  TORCH_CHECK(fit.dim() == 2 && fit.size(0) == pop.size(0) && fit.size(1) == pop.size(1), op,
              ": fitness must be (B, P), got ", fit.sizes());
  check_like(op, "trial_fitness", trial_fit, fit);
  TORCH_CHECK(fit.scalar_type() == pop.scalar_type() && fit.device() == pop.device(), op,
              ": fitness must have population's dtype and device");
  TORCH_CHECK(pop.is_contiguous() && fit.is_contiguous(), op, ": population and fitness are updated in place and "
              "must be contiguous");
}

}  // namespace advrobust
