// mk_mmd's device-independent part: it stacks Z = cat(x, y), walks Z in row blocks,
// gets each block's dot products from one matrix product (BLAS / cuBLAS), and hands the
// block to a device's tile function, which turns dots into kernel sums (forward) or into
// gradient weights (backward) in one fused pass. No n x m x K tensor is ever formed;
// the extra memory is O((n + m) d + block), the block capped at kTileElements.
#pragma once

#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>
#include <torch/types.h>

#include <tuple>
#include <type_traits>

#include "mk_mmd_math.h"

namespace advrobust {

constexpr int64_t kTileElements = int64_t(1) << 22;

// Forward tile: `dots` (rows, cols) holds z_i . z_j for i = row0 + r, j = row0 + c (the
// upper triangle j >= i is used). Writes sum_{j>=i} mult_ij a(i,j) k(z_i,z_j) to
// row_out[row0 + r] (float64), mult = 2 off the diagonal, 1 (biased) or 0 on it.
using MmdForwardTileFn = void (*)(const at::Tensor& dots, const at::Tensor& norms, int64_t row0,
                                  const MmdSetup& setup, at::Tensor& row_out);
// Backward tile: `dots` (rows, n_total - row0) holds z_i . z_j for i = row0 + r and
// j = row0 + c (the upper triangle, as in the forward; run after it). It is overwritten with the pair
// weights W_ij = 2 a(i,j) w(d_ij) for j > i and 0 for j <= i (each pair once; the driver
// applies W and its transpose), and row_sums[r] = sum_j W_ij.
using MmdBackwardTileFn = void (*)(at::Tensor& dots, const at::Tensor& norms, int64_t row0,
                                   const MmdSetup& setup, at::Tensor& row_sums);

MmdSetup make_mmd_setup(int64_t n, int64_t m, at::ArrayRef<double> sigmas, bool unbiased);

at::Tensor mk_mmd_forward(const at::Tensor& x, const at::Tensor& y, at::ArrayRef<double> sigmas, bool unbiased,
                          MmdForwardTileFn tile);

// MMD^2 and its gradient in x and y, from one walk over the tiles: each tile's dots come
// from one matrix product, the forward tile reads them, the backward tile turns them into
// pair weights, and two more products apply the weights (3 products per tile instead of the
// 4 of a forward followed by a backward that recomputes the dots).
std::tuple<at::Tensor, at::Tensor, at::Tensor> mk_mmd_with_grad(const at::Tensor& x, const at::Tensor& y,
                                                                at::ArrayRef<double> sigmas, bool unbiased,
                                                                MmdForwardTileFn forward_tile,
                                                                MmdBackwardTileFn backward_tile);

// ------------------------------------------------------------------ autocast
// Under autocast the driver's at::mm would be downcast (bf16 on the CPU, fp16 on CUDA) and the
// tiles, which compute in float32/float64 only, would then refuse the dots. MMD^2 is a small
// difference of large sums, the kind of op autocast keeps in float32 anyway, so mk_mmd and
// _mk_mmd_with_grad get Autocast kernels (registered per device next to their CPU / CUDA
// kernels) in the way torchvision's roi_align does (torchvision/csrc/ops/autocast): with the
// autocast key excluded for the whole call, bf16/fp16 inputs (latents a model produced under
// autocast) are cast to float32, and the op redispatches; the result stays float32.
// at::autocast::cached_cast leaves float32 and float64 alone, so those compute exactly as
// outside autocast. torch.library.register_autocast would cast float64 down to float32 too,
// and the C++ registration also serves callers that never import the Python package.
using MmdValueOp = at::Tensor(const at::Tensor&, const at::Tensor&, at::ArrayRef<double>, bool);
using MmdWithGradOp = std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                   at::ArrayRef<double>, bool);

template <typename Signature, c10::DispatchKey kAutocastKey, c10::DeviceType kDevice>
struct MmdAutocast {
  static typename c10::guts::function_traits<Signature>::return_type call(const at::Tensor& x, const at::Tensor& y,
                                                                          at::ArrayRef<double> sigmas,
                                                                          bool unbiased) {
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow(std::is_same_v<Signature, MmdValueOp> ? "advrobust::mk_mmd"
                                                                                       : "advrobust::_mk_mmd_with_grad",
                                                  "")
                               .template typed<Signature>();
    const c10::impl::ExcludeDispatchKeyGuard no_autocast(kAutocastKey);
    return op.call(at::autocast::cached_cast(at::kFloat, x, kDevice),
                   at::autocast::cached_cast(at::kFloat, y, kDevice), sigmas, unbiased);
  }
};

// m.impl(...) both ops' Autocast kernels for one device (a TORCH_LIBRARY_IMPL's Library).
template <c10::DispatchKey kAutocastKey, c10::DeviceType kDevice>
void register_mmd_autocast(torch::Library& m) {
  m.impl("mk_mmd", &MmdAutocast<MmdValueOp, kAutocastKey, kDevice>::call);
  m.impl("_mk_mmd_with_grad", &MmdAutocast<MmdWithGradOp, kAutocastKey, kDevice>::call);
}

}  // namespace advrobust
