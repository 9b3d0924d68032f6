"""The CUDA kernels against the CPU kernels and the pure-PyTorch twins.

Every input is drawn on the CPU with a seeded generator and copied to the GPU, so both
backends see the same values: DE ops must agree bit for bit, linf_step exactly, l2_step
and mk_mmd to rounding (CUDA == twin is covered by test_ops.py, parametrised over
devices). Skipped (conftest's ``needs_cuda``) without a GPU or without
advrobust's CUDA kernels.
"""
import pytest
import torch

from advrobust import ops
from advrobust.ops import reference as ref

pytestmark = pytest.mark.needs_cuda

OPS = torch.ops.advrobust


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _cuda(*ts):
    return tuple(None if t is None else t.cuda() for t in ts)


# ------------------------------------------------------------------ linf_step / l2_step

def _step_args(shape, dtype, per_sample, bounds, layout, seed):
    """CPU arguments of a step op; layout: 'contiguous', 'transposed' or 'offset' (storage offset 1)."""
    g = _gen(seed)

    def rnd():
        if layout == "transposed":
            return torch.randn(*shape[:-2], shape[-1], shape[-2], generator=g, dtype=dtype).transpose(-1, -2)
        if layout == "offset":  # contiguous but not 16-byte aligned: the scalar (non-vector) path
            n = 1
            for s in shape:
                n *= s
            return torch.randn(n + 1, generator=g, dtype=dtype)[1:].view(shape)
        return torch.randn(*shape, generator=g, dtype=dtype)

    x_adv, grad, x_nat = rnd(), rnd(), rnd()
    grad = grad.masked_fill(grad.abs() < 0.2, 0.0)  # exact zeros: sign(0) = 0
    B = shape[0]
    if per_sample:
        alpha = torch.rand(B, generator=g, dtype=dtype) * 0.5
        eps = torch.rand(B, generator=g, dtype=dtype) * 2.0
        eps[0] = 0.0  # projects onto x_nat
    else:
        alpha, eps = torch.tensor([0.3], dtype=dtype), torch.tensor([1.1], dtype=dtype)
    if bounds == "none":
        lo = hi = None
    elif bounds == "scalar":
        lo, hi = torch.tensor([-1.0], dtype=dtype), torch.tensor([1.5], dtype=dtype)
    elif bounds == "lo_only":
        lo, hi = -torch.rand(shape[1], generator=g, dtype=dtype), None
    else:
        lo = -torch.rand(shape[1], generator=g, dtype=dtype) - 0.2
        hi = torch.rand(shape[1], generator=g, dtype=dtype) + 0.2
    return x_adv, grad, x_nat, alpha, eps, lo, hi


STEP_CASES = [
    # (shape, dtype, per-sample, bounds, layout)
    ((1, 1, 1, 1), torch.float32, False, "none", "contiguous"),
    ((7, 3, 9, 11), torch.float32, True, "channel", "contiguous"),
    ((7, 3, 9, 11), torch.float64, True, "scalar", "transposed"),
    ((4, 5, 33, 17), torch.float32, False, "channel", "transposed"),
    ((6, 13), torch.float64, True, "channel", "contiguous"),
    ((3, 2, 4, 5, 6), torch.float32, True, "none", "contiguous"),
    ((5, 3, 8, 8), torch.float32, True, "channel", "contiguous"),   # float4 path
    ((5, 3, 8, 8), torch.float32, True, "channel", "offset"),       # misaligned: scalar path
    ((5, 3, 8, 8), torch.float64, True, "lo_only", "contiguous"),   # double2 path
    ((5, 3, 8, 8), torch.float64, False, "channel", "offset"),
    ((3, 3, 97, 101), torch.float32, True, "channel", "contiguous"),  # several l2 chunks per sample
    ((2, 1, 513, 517), torch.float64, True, "scalar", "contiguous"),  # 130 chunks
    ((300, 1, 3, 5), torch.float32, True, "none", "contiguous"),     # many small samples
]


@pytest.mark.parametrize("shape,dtype,per_sample,bounds,layout", STEP_CASES)
def test_linf_step_cuda_equals_cpu_and_twin(shape, dtype, per_sample, bounds, layout):
    args = _step_args(shape, dtype, per_sample, bounds, layout, seed=hash((shape, bounds, layout)) % 2**31)
    want = OPS.linf_step(*args)
    got = OPS.linf_step(*_cuda(*args))
    assert got.is_cuda and got.is_contiguous() and got.shape == want.shape
    assert torch.equal(got.cpu(), want)  # sign * alpha is exact: every backend bit-identical
    assert torch.equal(got, ref.linf_step_reference(*_cuda(*args)))


@pytest.mark.parametrize("shape,dtype,per_sample,bounds,layout", STEP_CASES)
def test_l2_step_cuda_equals_cpu_and_twin(shape, dtype, per_sample, bounds, layout):
    args = _step_args(shape, dtype, per_sample, bounds, layout, seed=1 + hash((shape, bounds, layout)) % 2**31)
    want = OPS.l2_step(*args)
    cuda_args = _cuda(*args)
    got = OPS.l2_step(*cuda_args)
    assert got.is_cuda and got.is_contiguous() and got.shape == want.shape
    tol = dict(rtol=2e-5, atol=2e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got.cpu(), want, **tol)
    torch.testing.assert_close(got, ref.l2_step_reference(*cuda_args), **tol)
    assert torch.equal(OPS.l2_step(*cuda_args), got)  # deterministic: no atomics


def test_l2_step_cuda_zero_gradient_and_zero_eps():
    g = _gen(5)
    x_nat = torch.randn(3, 2, 5, 5, generator=g).cuda()
    x_adv = x_nat + 0.01 * torch.randn(3, 2, 5, 5, generator=g).cuda()
    grad = torch.randn(3, 2, 5, 5, generator=g).cuda()
    grad[1] = 0.0
    out = ops.l2_step(x_adv, grad, x_nat, alpha=0.5, eps=torch.tensor([1.0, 1.0, 0.0], device="cuda"))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1], x_adv[1])
    torch.testing.assert_close(out[2], x_nat[2])


def test_step_ops_cuda_empty_and_inputs_untouched():
    x = torch.empty(0, 3, 4, 4, device="cuda")
    a = torch.tensor([0.1], device="cuda")
    assert OPS.linf_step(x, x, x, a, a, None, None).shape == x.shape
    assert OPS.l2_step(x, x, x, a, a, None, None).shape == x.shape
    args = _cuda(*_step_args((4, 3, 5, 5), torch.float32, True, "channel", "contiguous", seed=6))
    copies = [t.clone() for t in args[:3]]
    OPS.linf_step(*args)
    OPS.l2_step(*args)
    assert all(torch.equal(t, c) for t, c in zip(args[:3], copies))


# ------------------------------------------------------------------ differential evolution

def _de_problem(B, P, k, C, dtype, seed, H=9, W=7):
    g = _gen(seed)
    D = k * (2 + C)
    lower = torch.tensor([0.0, 0.0] + [-1.0] * C, dtype=dtype).repeat(k)
    upper = torch.tensor([H, W] + [2.0] * C, dtype=dtype).repeat(k)
    pop = lower + torch.rand(B, P, D, generator=g, dtype=dtype) * (upper - lower)
    draws = ops.de_draws(B, P, D, dtype=dtype, generator=g)
    images = torch.randn(B, C, H, W, generator=g, dtype=dtype)
    return pop, draws, lower, upper, images


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("F,CR,resample", [(0.5, 1.0, True), (0.9, 0.3, False), (2.5, 0.7, True), (1.7, 0.5, False)])
@pytest.mark.parametrize("B,P,k,C", [(5, 11, 2, 3), (1, 4, 1, 1), (3, 37, 5, 2)])
def test_de_trial_cuda_bit_exact(dtype, F, CR, resample, B, P, k, C):
    pop, d, lower, upper, _ = _de_problem(B, P, k, C, dtype, seed=3 + B + P)
    args = (pop, d.donors, d.cross_u, d.cross_j, d.resample_u, lower, upper, F, CR, resample)
    want = OPS.de_trial(*args)
    cuda_args = _cuda(*args[:7]) + args[7:]
    got = OPS.de_trial(*cuda_args)
    assert torch.equal(got.cpu(), want)  # a + F (b - c) is not fused into an FMA on the GPU
    assert torch.equal(got, ref.de_trial_reference(*cuda_args))


def test_de_trial_cuda_rejects_bad_donors():
    pop, d, lower, upper, _ = _de_problem(2, 6, 1, 3, torch.float32, seed=8)
    donors = d.donors.clone()
    donors[1, 2, 0] = 6
    with pytest.raises(RuntimeError, match="donors must lie in"):
        OPS.de_trial(*_cuda(pop, donors, d.cross_u, d.cross_j, d.resample_u, lower, upper), 0.5, 0.9, True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("add", [False, True])
@pytest.mark.parametrize("k", [1, 3, 8])
def test_de_build_cuda_bit_exact(dtype, add, k):
    C = 3
    pop, _, _, _, images = _de_problem(3, 6, k, C, dtype, seed=4 + k)
    cand = pop.view(3, 6, k, 2 + C).clone()
    cand[0, 0, :, :2] = torch.tensor([4.2, 3.9], dtype=dtype)  # all k pixels coincide: order matters with add
    cand[1, 2, 0, :2] = torch.tensor([-3.0, 50.0], dtype=dtype)  # outside the image: clamped to its edge
    want = OPS.de_build(images, cand, add)
    got = OPS.de_build(*_cuda(images, cand), add)
    assert torch.equal(got.cpu(), want)
    assert torch.equal(got, ref.de_build_reference(*_cuda(images, cand), add))
    cand[2, 1, 0, :2] = torch.tensor([float("nan"), 6.999], dtype=dtype)  # NaN row -> 0 (not for the twin)
    assert torch.equal(OPS.de_build(*_cuda(images, cand), add).cpu(), OPS.de_build(images, cand, add))


def test_de_build_cuda_non_contiguous_images():
    pop, _, _, _, images = _de_problem(2, 5, 2, 3, torch.float32, seed=9, H=6, W=6)
    images_t = images.cuda().transpose(2, 3)  # a view with non-row-major strides
    cand = pop.view(2, 5, 2, 5).cuda()
    got = OPS.de_build(images_t, cand, False)
    assert torch.equal(got.cpu(), OPS.de_build(images_t.cpu(), cand.cpu(), False))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_de_select_cuda_bit_exact(dtype):
    pop, _, _, _, _ = _de_problem(4, 9, 2, 3, dtype, seed=5)
    g = _gen(15)
    trial = pop.flip(1).contiguous() + 0.5
    fit = torch.rand(4, 9, generator=g, dtype=dtype)
    tfit = torch.rand(4, 9, generator=g, dtype=dtype)
    tfit[0, 0] = fit[0, 0]  # a tie goes to the trial
    tfit[1, 1] = float("nan")  # never selected
    pop_cpu, fit_cpu = pop.clone(), fit.clone()
    OPS.de_select_(pop_cpu, fit_cpu, trial, tfit)
    pop_gpu, fit_gpu = pop.cuda(), fit.cuda()
    trial_gpu = trial.cuda().transpose(0, 1).contiguous().transpose(0, 1)  # non-contiguous trial
    OPS.de_select_(pop_gpu, fit_gpu, trial_gpu, tfit.cuda())
    assert torch.equal(pop_gpu.cpu(), pop_cpu) and torch.equal(fit_gpu.cpu(), fit_cpu)
    want_pop, want_fit = ref.de_select_reference(pop, fit, trial, tfit)
    assert torch.equal(pop_cpu, want_pop) and torch.equal(fit_cpu, want_fit)


# ------------------------------------------------------------------ mk_mmd

MMD_CASES = [
    # n, m, d, unbiased: odd sizes; 5500 rows span several tiles and several column chunks
    (1, 1, 3, False), (2, 3, 1, True), (17, 29, 5, False), (17, 29, 5, True), (64, 40, 33, True),
    (3000, 2500, 4, False), (3000, 2500, 4, True),
]


@pytest.mark.parametrize("n,m,d,unbiased", MMD_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mk_mmd_cuda_forward_backward_equal_cpu(n, m, d, unbiased, dtype):
    g = _gen(n * 100 + m)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.randn(m, d, generator=g, dtype=dtype) * 1.3 + 0.4
    sigmas = ops.dan_sigmas(x, y) if n + m > 2 else [1.0, 3.0]
    tol = dict(rtol=1e-4, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-12)

    want = OPS.mk_mmd(x, y, sigmas, unbiased)
    got = OPS.mk_mmd(x.cuda(), y.cuda(), sigmas, unbiased)
    assert got.is_cuda and got.dtype == dtype and got.dim() == 0
    torch.testing.assert_close(got.cpu(), want, **tol)
    if n + m < 1000:
        torch.testing.assert_close(got, ref.mk_mmd_reference(x.cuda(), y.cuda(), sigmas, unbiased), **tol)

    v_want, gx_want, gy_want = OPS._mk_mmd_with_grad(x, y, sigmas, unbiased)
    v, gx, gy = OPS._mk_mmd_with_grad(x.cuda(), y.cuda(), sigmas, unbiased)
    torch.testing.assert_close(v.cpu(), v_want, **tol)
    # gradients are sums of signed terms: compare against their scale, not element by element
    scale = max(gx_want.abs().max().item(), gy_want.abs().max().item(), 1e-30)
    gtol = dict(rtol=tol["rtol"], atol=tol["rtol"] * scale)
    torch.testing.assert_close(gx.cpu(), gx_want, **gtol)
    torch.testing.assert_close(gy.cpu(), gy_want, **gtol)
    again = OPS._mk_mmd_with_grad(x.cuda(), y.cuda(), sigmas, unbiased)
    assert torch.equal(again[1], gx) and torch.equal(again[2], gy)  # deterministic


def test_mk_mmd_cuda_gradcheck():
    g = _gen(12)
    x = torch.randn(7, 4, generator=g, dtype=torch.float64).cuda().requires_grad_()
    y = (torch.randn(9, 4, generator=g, dtype=torch.float64) + 0.3).cuda().requires_grad_()
    for unbiased in (False, True):
        assert torch.autograd.gradcheck(lambda a, b: ops.mk_mmd(a, b, [0.5, 1.5, 4.0], unbiased=unbiased), (x, y))


def test_mk_mmd_cuda_on_second_device_if_any():
    if torch.cuda.device_count() < 2:
        pytest.skip("one GPU")
    x = torch.randn(20, 3, dtype=torch.float64, device="cuda:1")
    y = torch.randn(30, 3, dtype=torch.float64, device="cuda:1") + 0.2
    got = OPS.mk_mmd(x, y, [1.0], False)
    assert got.device == x.device
    torch.testing.assert_close(got.cpu(), OPS.mk_mmd(x.cpu(), y.cpu(), [1.0], False), rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ opcheck

def _opcheck_samples():
    g = _gen(21)
    x = torch.randn(3, 2, 5, 4, generator=g)
    step = _cuda(x, torch.randn(3, 2, 5, 4, generator=g), x + 0.1, torch.rand(3, generator=g),
                 torch.rand(3, generator=g), torch.tensor([-1.0, -2.0]), torch.tensor([1.0, 2.0]))
    pop, d, lower, upper, images = _de_problem(2, 6, 1, 3, torch.float32, seed=22)
    pop, lower, upper, images = _cuda(pop, lower, upper, images)
    d = ops.DEDraws(*_cuda(*d))
    x64 = torch.randn(6, 3, generator=g, dtype=torch.float64).cuda()
    y64 = torch.randn(5, 3, generator=g, dtype=torch.float64).cuda()
    return [
        (OPS.linf_step.default, step),
        (OPS.l2_step.default, step),
        (OPS.linf_step.default, step[:5] + (None, None)),
        (OPS.l2_step.default, step[:5] + (None, None)),
        (OPS.de_trial.default, (pop, d.donors, d.cross_u, d.cross_j, d.resample_u, lower, upper, 0.5, 0.9, True)),
        (OPS.de_build.default, (images, pop.view(2, 6, 1, 5), False)),
        (OPS.de_select_.default, (pop.clone(), torch.rand(2, 6, device="cuda"), pop.flip(1).contiguous(),
                                  torch.rand(2, 6, device="cuda"))),
        (OPS.mk_mmd.default, (x64.clone().requires_grad_(), y64.clone().requires_grad_(), [0.5, 2.0], True)),
        (OPS._mk_mmd_with_grad.default, (x64.clone().requires_grad_(), y64.clone().requires_grad_(), [0.5, 2.0],
                                        False)),
    ]


@pytest.mark.parametrize("case", range(9))
def test_opcheck_cuda(case):
    op, args = _opcheck_samples()[case]
    torch.library.opcheck(op, args)
