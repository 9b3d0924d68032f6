#include "mmd_driver.h"

#include <ATen/Context.h>

#include <algorithm>

#include "mk_mmd_checks.h"

namespace advrobust {

MmdSetup make_mmd_setup(int64_t n, int64_t m, at::ArrayRef<double> sigmas, bool unbiased) {
  MmdSetup s{};
  s.kernels.num_kernels = static_cast<int>(sigmas.size());
  for (size_t k = 0; k < sigmas.size(); ++k) s.kernels.coef[k] = -0.5 / (sigmas[k] * sigmas[k]);
  const double dn = static_cast<double>(n), dm = static_cast<double>(m);
  s.a_xx = unbiased ? 1.0 / (dn * (dn - 1.0)) : 1.0 / (dn * dn);
  s.a_yy = unbiased ? 1.0 / (dm * (dm - 1.0)) : 1.0 / (dm * dm);
  s.a_xy = 1.0 / (dn * dm);
  s.n_x = n;
  s.n_total = n + m;
  s.unbiased = unbiased;
  return s;
}

namespace {
// Rows per tile: at most kTileElements / (n + m), at least 16; on the CPU also at most 256
// (the diagonal blocks compute pairs twice, thin blocks waste fewer of them: 256 rows cut
// the flops at n + m = 4096 by a tenth against 1024 and ran 1.2x faster on a 2-core CPU).
// A GPU keeps the larger blocks, the larger matrix products suit it better.
int64_t block_rows(int64_t n_total, bool on_cpu) {
  const int64_t max_rows = on_cpu ? 256 : n_total;
  return std::max<int64_t>(16, std::min({n_total, max_rows, kTileElements / std::max<int64_t>(1, n_total)}));
}
}  // namespace

// Both walks below hold an at::NoTF32Guard: with torch.backends.cuda.matmul.allow_tf32 or
// set_float32_matmul_precision("high"), cuBLAS would round float32 inputs to TF32 (10-bit
// mantissa), ||a||^2 + ||b||^2 - 2 a.b would then lose the distances that are small next to
// the norms, and the CUDA value would drift from the CPU's. The guard is thread-local and
// changes nothing for the CPU's products.

at::Tensor mk_mmd_forward(const at::Tensor& x, const at::Tensor& y, at::ArrayRef<double> sigmas, bool unbiased,
                          MmdForwardTileFn tile) {
  check_mmd_args(x, y, sigmas, unbiased);
  const at::NoTF32Guard full_precision_products;
  const MmdSetup setup = make_mmd_setup(x.size(0), y.size(0), sigmas, unbiased);
  const at::Tensor z = at::cat({x, y}).contiguous();
  const at::Tensor norms = (z * z).sum(1);
  const int64_t N = setup.n_total, T = block_rows(N, z.is_cpu());
  at::Tensor row_out = at::empty({N}, z.options().dtype(at::kDouble));
  for (int64_t i0 = 0; i0 < N; i0 += T) {
    const int64_t rows = std::min(T, N - i0);
    const at::Tensor dots = at::mm(z.narrow(0, i0, rows), z.narrow(0, i0, N - i0).t());
    tile(dots, norms, i0, setup, row_out);
  }
  return row_out.sum().to(x.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> mk_mmd_with_grad(const at::Tensor& x, const at::Tensor& y,
                                                                at::ArrayRef<double> sigmas, bool unbiased,
                                                                MmdForwardTileFn forward_tile,
                                                                MmdBackwardTileFn backward_tile) {
  check_mmd_args(x, y, sigmas, unbiased);
  const at::NoTF32Guard full_precision_products;
  const MmdSetup setup = make_mmd_setup(x.size(0), y.size(0), sigmas, unbiased);
  const at::Tensor z = at::cat({x, y}).contiguous();
  const at::Tensor norms = (z * z).sum(1);
  const int64_t N = setup.n_total, T = block_rows(N, z.is_cpu());
  // grad z_i = sum_j W_ij (z_i - z_j) over all j != i. Each tile holds every pair (i < j)
  // once, so it feeds both ends: rows i get rowsum_i z_i - (W z)_i, columns j get
  // colsum_j z_j - (W^T z)_j.
  at::Tensor row_out = at::empty({N}, z.options().dtype(at::kDouble));
  at::Tensor grad_z = at::zeros_like(z);
  at::Tensor row_sums = at::empty({T}, z.options());
  for (int64_t i0 = 0; i0 < N; i0 += T) {
    const int64_t rows = std::min(T, N - i0), cols = N - i0;
    const at::Tensor z_block = z.narrow(0, i0, rows), z_cols = z.narrow(0, i0, cols);
    at::Tensor dots = at::mm(z_block, z_cols.t());
    forward_tile(dots, norms, i0, setup, row_out);
    at::Tensor sums = row_sums.narrow(0, 0, rows);
    backward_tile(dots, norms, i0, setup, sums);  // dots -> pair weights W
    grad_z.narrow(0, i0, rows).add_(z_block * sums.unsqueeze(1)).addmm_(dots, z_cols, 1.0, -1.0);
    grad_z.narrow(0, i0, cols).add_(z_cols * dots.sum(0).unsqueeze(1)).addmm_(dots.t(), z_block, 1.0, -1.0);
  }
  return {row_out.sum().to(x.scalar_type()), grad_z.narrow(0, 0, setup.n_x).clone(),
          grad_z.narrow(0, setup.n_x, N - setup.n_x).clone()};
}

}  // namespace advrobust
