// Argument checks and shape bookkeeping shared by the CPU kernels and the CUDA glue.
// The Python wrappers in advrobust/ops check the same things with friendlier messages;
// these TORCH_CHECKs guard direct calls of torch.ops.advrobust.*.
#pragma once

#include <torch/types.h>

#include "kernel_math.h"
#include "step_args.h"

#include <vector>

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

// The layout of a step op's input viewed as (B, C, S): B samples, C channels (the length
// of the per-channel bounds, 1 if none), S contiguous elements per (sample, channel).
struct StepLayout {
  int64_t batch, channels, inner;
  int64_t alpha_stride, eps_stride, lo_stride, hi_stride;  // 0: one value for all
};

inline StepLayout check_step_args(const char* op, const at::Tensor& x_adv, const at::Tensor& grad,
                                  const at::Tensor& x_nat, const at::Tensor& alpha, const at::Tensor& eps,
                                  const c10::optional<at::Tensor>& lo, const c10::optional<at::Tensor>& hi) {
  check_float_tensor(op, "x_adv", x_adv);
  check_like(op, "grad", grad, x_adv);
  check_like(op, "x_nat", x_nat, x_adv);
  TORCH_CHECK(x_adv.dim() >= 1, op, ": x_adv must have a batch dimension");
  StepLayout L{};
  L.batch = x_adv.size(0);
  int64_t channels = 1;
  for (const auto* bound : {&lo, &hi}) {
    if (bound->has_value()) {
      const at::Tensor& b = bound->value();
      TORCH_CHECK(b.dim() == 1 && b.scalar_type() == x_adv.scalar_type() && b.device() == x_adv.device(), op,
                  ": lo/hi must be 1-D tensors of x_adv's dtype and device");
      if (b.numel() != 1) {
        TORCH_CHECK(x_adv.dim() >= 2 && b.numel() == x_adv.size(1), op, ": lo/hi have ", b.numel(),
                    " values, expected 1 or one per channel (", x_adv.dim() >= 2 ? x_adv.size(1) : 0, ")");
        channels = b.numel();
      }
    }
  }
  // Per-channel bounds need the channel split; otherwise one row per sample.
  L.channels = channels;
  const int64_t per_sample = L.batch == 0 ? 0 : x_adv.numel() / L.batch;
  L.inner = channels == 1 ? per_sample : per_sample / channels;
  auto stride_of = [&](const at::Tensor& t, int64_t n, const char* name) -> int64_t {
    TORCH_CHECK(t.dim() == 1 && (t.numel() == 1 || t.numel() == n), op, ": ", name, " must have 1 or ", n,
                " values, got shape ", t.sizes());
    TORCH_CHECK(t.scalar_type() == x_adv.scalar_type() && t.device() == x_adv.device(), op, ": ", name,
                " must have x_adv's dtype and device");
    return t.numel() == 1 ? 0 : 1;
  };
  L.alpha_stride = stride_of(alpha, L.batch, "alpha");
  L.eps_stride = stride_of(eps, L.batch, "eps");
  L.lo_stride = lo.has_value() ? stride_of(lo.value(), channels, "lo") : 0;
  L.hi_stride = hi.has_value() ? stride_of(hi.value(), channels, "hi") : 0;
  return L;
}

// A step op's inputs made contiguous, its output allocated, and its layout: what both
// backends need before they take raw pointers with step_args<T>().
struct StepInputs {
  at::Tensor x_adv, grad, x_nat, alpha, eps, lo, hi;  // lo/hi undefined when absent
  at::Tensor out;
  StepLayout layout;
};

inline StepInputs prepare_step(const char* op, const at::Tensor& x_adv, const at::Tensor& grad,
                               const at::Tensor& x_nat, const at::Tensor& alpha, const at::Tensor& eps,
                               const c10::optional<at::Tensor>& lo, const c10::optional<at::Tensor>& hi) {
  const StepLayout L = check_step_args(op, x_adv, grad, x_nat, alpha, eps, lo, hi);
  return {x_adv.contiguous(), grad.contiguous(), x_nat.contiguous(), alpha.contiguous(), eps.contiguous(),
          lo.has_value() ? lo->contiguous() : at::Tensor(), hi.has_value() ? hi->contiguous() : at::Tensor(),
          at::empty(x_adv.sizes(), x_adv.options().memory_format(at::MemoryFormat::Contiguous)), L};
}

template <typename T>
StepArgs<T> step_args(StepInputs& in) {
  const StepLayout& L = in.layout;
  return {in.x_adv.const_data_ptr<T>(), in.grad.const_data_ptr<T>(), in.x_nat.const_data_ptr<T>(),
          in.alpha.const_data_ptr<T>(), in.eps.const_data_ptr<T>(),
          in.lo.defined() ? in.lo.const_data_ptr<T>() : nullptr, in.hi.defined() ? in.hi.const_data_ptr<T>() : nullptr,
          in.out.mutable_data_ptr<T>(), L.batch, L.channels, L.inner,
          L.alpha_stride, L.eps_stride, L.lo_stride, L.hi_stride};
}

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
