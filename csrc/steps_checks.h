// The linf_step / l2_step family's argument checks and bookkeeping, shared by the CPU kernels
// (cpu/linf_step.cpp, cpu/l2_step.cpp) and the CUDA glue (cuda/steps_glue.cpp).
#pragma once

#include <torch/types.h>

#include <algorithm>
#include <sstream>

#include "op_checks.h"
#include "steps_math.h"

namespace advrobust {

// Why a direct call refuses a NaN/Inf x_nat (the attacks check their clean images once).
constexpr const char* kNonfiniteCentreHint =
    "x_nat is the centre of the eps-ball and must be finite (check the clean images)";

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
  at::Tensor x_nat_nonfinite;  // int32 flag on x_adv's device, undefined when x_nat is not checked
  StepLayout layout;
};

inline StepInputs prepare_step(const char* op, const at::Tensor& x_adv, const at::Tensor& grad,
                               const at::Tensor& x_nat, const at::Tensor& alpha, const at::Tensor& eps,
                               const c10::optional<at::Tensor>& lo, const c10::optional<at::Tensor>& hi,
                               bool check_x_nat) {
  const StepLayout L = check_step_args(op, x_adv, grad, x_nat, alpha, eps, lo, hi);
  return {x_adv.contiguous(), grad.contiguous(), x_nat.contiguous(), alpha.contiguous(), eps.contiguous(),
          lo.has_value() ? lo->contiguous() : at::Tensor(), hi.has_value() ? hi->contiguous() : at::Tensor(),
          at::empty(x_adv.sizes(), x_adv.options().memory_format(at::MemoryFormat::Contiguous)),
          check_x_nat ? at::zeros({}, x_adv.options().dtype(at::kInt)) : at::Tensor(), L};
}

template <typename T>
StepArgs<T> step_args(StepInputs& in) {
  const StepLayout& L = in.layout;
  return {in.x_adv.const_data_ptr<T>(), in.grad.const_data_ptr<T>(), in.x_nat.const_data_ptr<T>(),
          in.alpha.const_data_ptr<T>(), in.eps.const_data_ptr<T>(),
          in.lo.defined() ? in.lo.const_data_ptr<T>() : nullptr, in.hi.defined() ? in.hi.const_data_ptr<T>() : nullptr,
          in.out.mutable_data_ptr<T>(),
          in.x_nat_nonfinite.defined() ? in.x_nat_nonfinite.mutable_data_ptr<int32_t>() : nullptr,
          L.batch, L.channels, L.inner,
          L.alpha_stride, L.eps_stride, L.lo_stride, L.hi_stride};
}

// A direct call's x_nat held a NaN or Inf: a ValueError worded as advrobust.checks.check_finite
// words it for the twin path. Only this error path looks at x_nat again, to count and name them.
[[noreturn]] inline void raise_nonfinite_x_nat(const char* op, const at::Tensor& x_nat) {
  const at::Tensor bad = at::isfinite(x_nat).logical_not().reshape({x_nat.size(0), -1}).cpu();
  const at::Tensor rows = bad.any(1);
  const int64_t n_rows = rows.sum().item<int64_t>();
  const at::Tensor first = rows.nonzero().flatten().narrow(0, 0, std::min<int64_t>(n_rows, 8));
  std::ostringstream samples;
  for (int64_t i = 0; i < first.numel(); ++i) samples << (i ? ", " : "") << first[i].item<int64_t>();
  C10_THROW_ERROR(ValueError, c10::str(op, ": x_nat has ", bad.sum().item<int64_t>(), " NaN/Inf values (samples [",
                                       samples.str(), "]", n_rows > 8 ? ", ..." : "", "); ", kNonfiniteCentreHint));
}

// After the kernel: its output, or the error above when its own pass over x_nat set the flag
// (check_x_nat). Reading the flag synchronises a GPU, as a direct call's check always did.
inline at::Tensor finish_step(const char* op, const StepInputs& in) {
  if (in.x_nat_nonfinite.defined() && in.x_nat_nonfinite.item<int32_t>() != 0) raise_nonfinite_x_nat(op, in.x_nat);
  return in.out;
}

}  // namespace advrobust
