// CUDA glue of mk_mmd and _mk_mmd_with_grad: the tile functions that mmd_driver.h walks
// (kernels: mk_mmd.cu).
#include "glue.h"

#include <tuple>

#include "../mk_mmd_checks.h"
#include "../mmd_driver.h"
#include "mk_mmd_launchers.h"

namespace advrobust {
namespace {

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
  m.impl("mk_mmd", &mk_mmd_cuda);
  m.impl("_mk_mmd_with_grad", &mk_mmd_with_grad_cuda);
}

TORCH_LIBRARY_IMPL(advrobust, AutocastCUDA, m) {  // float32 inside autocast: see mmd_driver.h
  register_mmd_autocast<c10::DispatchKey::AutocastCUDA, c10::DeviceType::CUDA>(m);
}

}  // namespace advrobust
