"""Numerics of the fused operators beyond "kernel == twin" (issue 7, items 1-3).

* mk_mmd under autocast (CPU bfloat16; CUDA float16 marked ``needs_cuda``): computed in
  float32 (float64 for float64 inputs), the same value and gradient as outside autocast;
  low-precision latents that autocast itself produced are accepted there.
* The float32 MMD self-term: k(z_i, z_i) is exactly K, checked against a float64 oracle
  written here from the textbook formula (explicit pairwise differences), not against the twin.
* NaN in, NaN out: every op propagates a NaN in its data tensors the same way in the
  kernel and in its twin (``de_build``: a NaN row/column gene goes to pixel 0).
"""
import pytest
import torch

import op_samples
from advrobust import ops
from advrobust.ops import reference as ref
from conftest import DEVICES

OPS = torch.ops.advrobust
SIGMAS_DA = ops.sigmas_from_variances(ops.DEEPADVERSARIES_MMD_VARIANCES)  # Ciprijanovic et al. 2022


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _same_bits(got, want):
    """Bit-exact equality, NaNs in the same places (torch.equal treats NaN != NaN)."""
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


def _mmd_value_and_grads(x, y, sigmas, unbiased):
    x, y = x.detach().requires_grad_(), y.detach().requires_grad_()
    value = ops.mk_mmd(x, y, sigmas, unbiased=unbiased)
    gx, gy = torch.autograd.grad(value, (x, y))
    return value.detach(), gx, gy


# ------------------------------------------------------------------ 1. mk_mmd under autocast

AUTOCAST = [("cpu", torch.bfloat16), pytest.param("cuda", torch.float16, marks=pytest.mark.needs_cuda)]


@pytest.mark.parametrize("device,low", AUTOCAST)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("unbiased", [False, True])
def test_mk_mmd_under_autocast_equals_outside(device, low, dtype, unbiased):
    """Inside autocast the op computes in the input's own precision (its inner matrix products
    are not downcast): value and gradient equal the ones outside, for the public wrapper and
    for both registered ops called directly."""
    g = _gen(11)
    x = torch.randn(37, 9, generator=g, dtype=dtype).to(device)
    y = (torch.randn(29, 9, generator=g, dtype=dtype) + 0.4).to(device)
    sig = [0.5, 1.5, 4.0]
    want = _mmd_value_and_grads(x, y, sig, unbiased)
    want_value_only = OPS.mk_mmd(x, y, sig, unbiased)
    want_fused = OPS._mk_mmd_with_grad(x, y, sig, unbiased)
    with torch.autocast(device, dtype=low):
        got = _mmd_value_and_grads(x, y, sig, unbiased)
        got_value_only = OPS.mk_mmd(x, y, sig, unbiased)
        got_fused = OPS._mk_mmd_with_grad(x, y, sig, unbiased)
    for a, b in zip(got + (got_value_only,) + got_fused, want + (want_value_only,) + want_fused):
        assert a.dtype == dtype
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("device,low", AUTOCAST)
def test_mk_mmd_takes_autocast_latents_in_float32(device, low):
    """Latents that a model produced under autocast (bf16 / fp16) are computed in float32: the
    result is float32, equals mk_mmd of the same values cast to float32, and the gradient
    reaches the model's weights."""
    g = _gen(12)
    layer = torch.nn.Linear(16, 8).to(device)
    a = torch.randn(21, 16, generator=g).to(device)
    b = (torch.randn(17, 16, generator=g) + 0.5).to(device)
    sig = [0.5, 2.0, 8.0]
    with torch.autocast(device, dtype=low):
        fa, fb = layer(a), layer(b)
        assert fa.dtype == low
        value = ops.mk_mmd(fa, fb, sig)
        direct = OPS.mk_mmd(fa.detach(), fb.detach(), sig, False)
    assert value.dtype == torch.float32 and direct.dtype == torch.float32
    (grad_w,) = torch.autograd.grad(value, layer.weight)
    assert torch.isfinite(grad_w).all() and grad_w.abs().sum() > 0
    a32, b32 = fa.detach().float().requires_grad_(), fb.detach().float().requires_grad_()
    want = ops.mk_mmd(a32, b32, sig)
    torch.testing.assert_close(value.detach(), want.detach(), rtol=0, atol=0)
    torch.testing.assert_close(direct, want.detach(), rtol=0, atol=0)
    want_ga, want_gb = torch.autograd.grad(want, (a32, b32))
    fa2, fb2 = fa.detach().requires_grad_(), fb.detach().requires_grad_()
    with torch.autocast(device, dtype=low):
        v2 = ops.mk_mmd(fa2, fb2, sig)
    got_ga, got_gb = torch.autograd.grad(v2, (fa2, fb2))
    assert got_ga.dtype == low  # the gradient flows back through the cast to the bf16/fp16 latents
    torch.testing.assert_close(got_ga, want_ga.to(low), rtol=0, atol=0)
    torch.testing.assert_close(got_gb, want_gb.to(low), rtol=0, atol=0)


def test_mk_mmd_low_precision_outside_autocast_is_a_clear_error():
    x = torch.randn(5, 3, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="autocast"):
        ops.mk_mmd(x, x, [1.0])


# ------------------------------------------------------------------ 2. the float32 self-term

def _mmd_oracle(x, y, sigmas, unbiased):
    """Textbook multi-kernel MMD^2 in float64 from explicit pairwise differences (no Gram identity)."""
    x, y = x.double(), y.double()

    def ksum(a, b):
        d2 = (a[:, None] - b[None]).pow(2).sum(-1)
        return sum(torch.exp(-d2 / (2.0 * s * s)) for s in sigmas)

    n, m = x.shape[0], y.shape[0]
    kxx, kyy, kxy = ksum(x, x), ksum(y, y), ksum(x, y)
    if unbiased:
        txx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
        tyy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    else:
        txx, tyy = kxx.mean(), kyy.mean()
    return txx + tyy - 2.0 * kxy.mean()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("scale", [1e-2, 1e-1, 1.0])
@pytest.mark.parametrize("unbiased", [False, True])
def test_mk_mmd_float32_matches_float64_oracle(device, scale, unbiased):
    """Float32 kernel and twin against the float64 oracle, DeepAdversaries' 19 widths
    (variances 1e-6 .. 1e6, Ciprijanovic et al. 2022), 64 x 32 latents.

    Before the fix, k(z_i, z_i) came from the Gram identity ||z||^2 + ||z||^2 - 2 z.z, which
    is not 0 in float32; with variances down to 1e-6 the biased MMD^2 was off by (relative)
    3e-5 at scale 1e-2, 2e-3 at scale 0.1 and 2.3e-2 at scale 1 (kernel and twin alike;
    the unbiased estimator, without diagonal, was within 1e-5). With the diagonal at
    distance exactly 0 both are within 2.1e-6 (absolute) of the oracle, the float32 rounding
    of a difference of sums of 19 O(1) terms; the tolerance is 3e-6 (the biased errors before:
    4.8e-6, 4.9e-4 and 1.4e-2). The unbiased estimator has no self-term (the twin's float32
    sums leave up to 4e-6 there): 1e-5. The gradient is checked against the oracle's too.
    """
    g = _gen(21)
    x = (torch.randn(64, 32, generator=g) * scale).to(device)
    y = (torch.randn(48, 32, generator=g) * scale + 0.3 * scale).to(device)
    want = _mmd_oracle(x, y, SIGMAS_DA, unbiased)
    for got in (OPS.mk_mmd(x, y, SIGMAS_DA, unbiased), ref.mk_mmd_reference(x, y, SIGMAS_DA, unbiased)):
        assert got.dtype == torch.float32
        tol = (3e-6 if device == "cpu" else 5e-6) if not unbiased else 1e-5  # unbiased: no self-term
        torch.testing.assert_close(got.double(), want, rtol=0, atol=tol)
    xo, yo = x.double().requires_grad_(), y.double().requires_grad_()
    want_gx, want_gy = torch.autograd.grad(_mmd_oracle(xo, yo, SIGMAS_DA, unbiased), (xo, yo))
    _, gx, gy = _mmd_value_and_grads(x, y, SIGMAS_DA, unbiased)
    tol = 1e-4 * max(want_gx.abs().max().item(), want_gy.abs().max().item())
    torch.testing.assert_close(gx.double(), want_gx, rtol=1e-3, atol=tol)
    torch.testing.assert_close(gy.double(), want_gy, rtol=1e-3, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
def test_mk_mmd_identical_single_points_give_zero(device):
    """n = m = 1, x == y: biased MMD^2 = K + K - 2K = 0 exactly needs k(z, z) = K exactly."""
    x = torch.full((1, 32), 3.0e-1, device=device) + torch.arange(32, device=device) * 1e-2
    assert OPS.mk_mmd(x, x.clone(), SIGMAS_DA, False).item() == 0.0
    assert ref.mk_mmd_reference(x, x.clone(), SIGMAS_DA, False).item() == 0.0


# ------------------------------------------------------------------ 3. NaN in, NaN out

def _with_nans(t, where):
    t = t.clone()
    t.view(-1)[where] = float("nan")
    return t


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("which", ["x_adv", "grad", "x_nat"])
def test_linf_step_nan_equals_twin(device, dtype, which):
    """A NaN in x_adv, grad or x_nat gives NaN in that output element and nowhere else, in the
    kernel and the twin. Before: a NaN gradient made no step (sign(NaN) = 0 in the kernel and
    in torch.sign) and the kernel's min/max dropped a NaN x_nat."""
    g = _gen(31)
    args = [torch.randn(4, 3, 8, 8, generator=g, dtype=dtype) for _ in range(3)]
    k = ["x_adv", "grad", "x_nat"].index(which)
    args[k] = _with_nans(args[k], [0, 5, 200, 767])
    alpha, eps = torch.tensor([0.3], dtype=dtype), torch.rand(4, generator=g, dtype=dtype)
    lo, hi = -torch.rand(3, generator=g, dtype=dtype) - 0.5, torch.rand(3, generator=g, dtype=dtype) + 0.5
    full = [t.to(device) for t in args + [alpha, eps, lo, hi]]
    got = OPS.linf_step(*full)
    _same_bits(got, ref.linf_step_reference(*full))
    assert torch.equal(torch.isnan(got), torch.isnan(full[k]))
    got_unbounded = OPS.linf_step(*full[:5], None, None)
    _same_bits(got_unbounded, ref.linf_step_reference(*full[:5], None, None))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("which", ["x_adv", "grad", "x_nat"])
def test_l2_step_nan_poisons_its_sample_only(device, dtype, which):
    """A NaN in a sample's x_adv, grad or x_nat makes that sample's output all NaN (its norms
    are NaN), in the kernel and the twin; the other samples are untouched."""
    g = _gen(32)
    args = [torch.randn(5, 3, 7, 6, generator=g, dtype=dtype) for _ in range(3)]
    k = ["x_adv", "grad", "x_nat"].index(which)
    per_sample = 3 * 7 * 6
    args[k] = _with_nans(args[k], [per_sample + 4, 3 * per_sample + 100])  # samples 1 and 3
    alpha, eps = torch.tensor([0.3], dtype=dtype), torch.rand(5, generator=g, dtype=dtype) * 2
    full = [t.to(device) for t in args + [alpha, eps]]
    for bounds in ((None, None), (torch.tensor([-1.0], dtype=dtype, device=device), None)):
        got = OPS.l2_step(*full, *bounds)
        want = ref.l2_step_reference(*full, *bounds)
        bad = torch.tensor([False, True, False, True, False], device=device)
        assert torch.equal(torch.isnan(got).flatten(1).all(1), bad)
        assert not torch.isnan(got[~bad]).any()
        torch.testing.assert_close(got, want, equal_nan=True)
        assert torch.equal(torch.isnan(got), torch.isnan(want))


def _de_setup(dtype, device, seed):
    pop, draws, lower, upper, images = op_samples.de_problem(3, 6, 2, 3, dtype, _gen(seed))
    return ([t.to(device) for t in (pop, lower, upper, images)], ops.DEDraws(*(t.to(device) for t in draws)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("resample", [False, True])
def test_de_trial_nan_genes_equal_twin(device, dtype, resample):
    (pop, lower, upper, _), draws = _de_setup(dtype, device, 33)
    pop = _with_nans(pop, [0, 7, 13, 41, 99, 150])
    args = (pop, draws.donors, draws.cross_u, draws.cross_j, draws.resample_u, lower, upper, 0.8, 0.6, resample)
    got = OPS.de_trial(*args)
    assert torch.isnan(got).any()
    _same_bits(got, ref.de_trial_reference(*args))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("add", [False, True])
def test_de_build_nan_gene_goes_to_pixel_zero(device, add):
    """A NaN row or column gene selects pixel index 0 (the kernels' de_pixel_index rule) in the
    kernel, the twin and ops.de_pixels; NaN channel values are copied (or added) as they are."""
    (pop, _, _, images), _ = _de_setup(torch.float32, device, 34)
    cand = pop.view(3, 6, 2, 5).clone()
    cand[0, 1, 0, 0] = float("nan")  # row NaN: row 0, column from the gene
    cand[1, 2, 1, 1] = float("nan")  # column NaN
    cand[2, 3, 0, :2] = float("nan")  # both: pixel (0, 0)
    cand[2, 4, 1, 2] = float("nan")  # a NaN value
    rows, cols = ops.de_pixels(cand, 9, 7)
    assert rows[0, 1, 0] == 0 and cols[1, 2, 1] == 0 and rows[2, 3, 0] == 0 and cols[2, 3, 0] == 0
    assert ((rows >= 0) & (rows < 9) & (cols >= 0) & (cols < 7)).all()
    got = OPS.de_build(images, cand, add)
    _same_bits(got, ref.de_build_reference(images, cand, add))
    r, c = int(rows[2, 4, 1]), int(cols[2, 4, 1])
    assert torch.isnan(got[2, 4, 0, r, c]) and torch.isnan(got).sum() == 1


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_de_select_nan_never_wins(device, dtype):
    """``trial_fitness <= fitness``: a NaN trial fitness never replaces, a NaN parent fitness is
    never replaced; NaN genes are carried as they are. Kernel == twin bit for bit."""
    (pop, _, _, _), _ = _de_setup(dtype, device, 35)
    g = _gen(36)
    trial = _with_nans(pop.flip(1), [3, 50])
    fit = torch.rand(3, 6, generator=g, dtype=dtype).to(device)
    tfit = torch.rand(3, 6, generator=g, dtype=dtype).to(device)
    fit.view(-1)[[2, 9]] = float("nan")
    tfit.view(-1)[[2, 4, 11]] = float("nan")
    tfit.view(-1)[0] = -1.0  # trial 0 wins: its NaN gene (index 3) comes in
    pop = _with_nans(pop, [6 * 10 + 1])  # a NaN gene of a parent that may stay
    want_pop, want_fit = ref.de_select_reference(pop, fit, trial, tfit)
    OPS.de_select_(pop, fit, trial, tfit)
    _same_bits(pop, want_pop)
    _same_bits(fit, want_fit)
    assert torch.isnan(fit.view(-1)[[2, 4, 9]]).tolist() == [True, False, True]
    assert torch.isnan(pop.view(3 * 6, -1)[0, 3])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("where", ["x", "y"])
def test_mk_mmd_nan_gives_nan_value_and_gradient(device, dtype, unbiased, where):
    """A NaN anywhere in x or y gives a NaN MMD^2 and NaN gradient, in the kernel and the twin
    (the float32 CPU kernel's vectorised exp used to map NaN to 0, a finite MMD)."""
    g = _gen(37)
    x = torch.randn(300, 5, generator=g, dtype=dtype).to(device)
    y = (torch.randn(270, 5, generator=g, dtype=dtype) + 0.2).to(device)
    if where == "x":
        x = _with_nans(x, [17])
    else:
        y = _with_nans(y, [5 * 260 + 2])
    sig = [0.5, 1.0, 3.0]
    assert torch.isnan(OPS.mk_mmd(x, y, sig, unbiased))
    assert torch.isnan(ref.mk_mmd_reference(x, y, sig, unbiased))
    value, gx, gy = _mmd_value_and_grads(x, y, sig, unbiased)
    assert torch.isnan(value)
    xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
    rx, ry = torch.autograd.grad(ref.mk_mmd_reference(xr, yr, sig, unbiased), (xr, yr))
    assert torch.equal(torch.isnan(gx), torch.isnan(rx)) and torch.equal(torch.isnan(gy), torch.isnan(ry))
    assert torch.isnan(gx).any() and torch.isnan(gy).any()
