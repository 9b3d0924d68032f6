"""The CUDA kernels against the CPU kernels and the pure-PyTorch twins.

Every registry case (tests/op_samples.py) is drawn on the CPU with a seeded generator and
copied to the GPU in the same layout, so both backends see the same values: DE ops must agree
bit for bit, linf_step exactly, l2_step and mk_mmd to rounding. The registry's ``cuda_only``
cases are sizes past the kernels' grid caps, so every grid-stride and batch loop runs more
than once. Beyond them: NaN inputs, fp16 autocast around mk_mmd, a side stream,
and (``slow``) launches over more than 2^31 elements. All marked ``needs_cuda``: skipped
without a CUDA device, failed on a device whose build lacks advrobust's CUDA kernels.
"""
import pytest
import torch

import op_samples
from advrobust import ops
from advrobust.ops import reference as ref

pytestmark = pytest.mark.needs_cuda

OPS = torch.ops.advrobust
NAN = float("nan")


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _cuda(*ts):
    return tuple(t.cuda() if isinstance(t, torch.Tensor) else t for t in ts)


def _step_tol(dtype):
    return dict(rtol=2e-5, atol=2e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)


def _mmd_tol(dtype):
    return dict(rtol=1e-4, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-12)


def _need_free_gpu_memory(gib, what):
    free = torch.cuda.mem_get_info()[0] / 2**30
    if free < gib:
        pytest.skip(f"{what} needs {gib:.0f} GiB of free GPU memory, this GPU has {free:.1f} GiB free")


# ------------------------------------------------------------------ registry: CUDA == CPU == twin

@pytest.mark.parametrize("sample", op_samples.params("linf_step"))
def test_linf_step_cuda_equals_cpu_and_twin(sample):
    cuda_args = sample.args("cuda")
    got = OPS.linf_step(*cuda_args)
    want = OPS.linf_step(*sample.args("cpu"))
    assert got.is_cuda and got.is_contiguous() and got.shape == want.shape
    assert torch.equal(got.cpu(), want)  # sign * alpha is exact: every backend bit-identical
    assert torch.equal(got, ref.linf_step_reference(*cuda_args))


@pytest.mark.parametrize("sample", op_samples.params("l2_step"))
def test_l2_step_cuda_equals_cpu_and_twin(sample):
    cuda_args = sample.args("cuda")
    got = OPS.l2_step(*cuda_args)
    want = OPS.l2_step(*sample.args("cpu"))
    assert got.is_cuda and got.is_contiguous() and got.shape == want.shape
    tol = _step_tol(sample.dtype)
    torch.testing.assert_close(got.cpu(), want, **tol)
    torch.testing.assert_close(got, ref.l2_step_reference(*cuda_args), **tol)
    assert torch.equal(OPS.l2_step(*cuda_args), got)  # deterministic: no atomics


@pytest.mark.parametrize("sample", op_samples.params("de_trial"))
def test_de_trial_cuda_bit_exact(sample):
    cuda_args = sample.args("cuda")
    got = OPS.de_trial(*cuda_args)
    assert torch.equal(got.cpu(), OPS.de_trial(*sample.args("cpu")))  # a + F (b - c) is not fused into an FMA
    assert torch.equal(got, ref.de_trial_reference(*cuda_args))


@pytest.mark.parametrize("sample", op_samples.params("de_build"))
def test_de_build_cuda_bit_exact(sample):
    images, cand, add = sample.args("cuda")
    got = OPS.de_build(images, cand, add)
    want = OPS.de_build(*sample.args("cpu"))
    assert torch.equal(got.cpu(), want)
    assert got.stride() == want.stride()  # channels-last images give a channels-last batch on both
    assert torch.equal(got, ref.de_build_reference(images, cand, add))


@pytest.mark.parametrize("sample", op_samples.params("de_select_"))
def test_de_select_cuda_bit_exact(sample):
    pop_gpu, fit_gpu, trial_gpu, tfit_gpu = sample.args("cuda")
    OPS.de_select_(pop_gpu, fit_gpu, trial_gpu, tfit_gpu)
    pop_cpu, fit_cpu, trial, tfit = sample.args("cpu")
    OPS.de_select_(pop_cpu, fit_cpu, trial, tfit)
    assert torch.equal(pop_gpu.cpu(), pop_cpu) and torch.equal(fit_gpu.cpu(), fit_cpu)
    want_pop, want_fit = ref.de_select_reference(*sample.args("cpu"))
    assert torch.equal(pop_cpu, want_pop) and torch.equal(fit_cpu, want_fit)


@pytest.mark.parametrize("sample", op_samples.params("mk_mmd"))
def test_mk_mmd_cuda_equals_cpu(sample):
    x, y, sigmas, unbiased = sample.args("cuda")
    got = OPS.mk_mmd(x, y, sigmas, unbiased)
    want = OPS.mk_mmd(*sample.args("cpu"))
    assert got.is_cuda and got.dtype == sample.dtype and got.dim() == 0
    torch.testing.assert_close(got.cpu(), want, **_mmd_tol(sample.dtype))
    if x.shape[0] + y.shape[0] < 1000:
        torch.testing.assert_close(got, ref.mk_mmd_reference(x, y, sigmas, unbiased), **_mmd_tol(sample.dtype))


@pytest.mark.parametrize("sample", op_samples.params("_mk_mmd_with_grad"))
def test_mk_mmd_with_grad_cuda_equals_cpu(sample):
    v, gx, gy = OPS._mk_mmd_with_grad(*sample.args("cuda"))
    v_want, gx_want, gy_want = OPS._mk_mmd_with_grad(*sample.args("cpu"))
    tol = _mmd_tol(sample.dtype)
    torch.testing.assert_close(v.cpu(), v_want, **tol)
    # gradients are sums of signed terms: compare against their scale, not element by element
    scale = max(gx_want.abs().max().item(), gy_want.abs().max().item(), 1e-30)
    gtol = dict(rtol=tol["rtol"], atol=tol["rtol"] * scale)
    torch.testing.assert_close(gx.cpu(), gx_want, **gtol)
    torch.testing.assert_close(gy.cpu(), gy_want, **gtol)
    again = OPS._mk_mmd_with_grad(*sample.args("cuda"))
    assert torch.equal(again[1], gx) and torch.equal(again[2], gy)  # deterministic


@pytest.mark.parametrize("sample", op_samples.all_params(opcheck=True))
def test_opcheck_cuda(sample):
    torch.library.opcheck(getattr(OPS, sample.op).default, sample.args("cuda", requires_grad=True))


# ------------------------------------------------------------------ by hand, errors, devices

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
    args = op_samples.sample("linf_step", "f32-7x3x9x11-alpha_per_sample-bounds_channel-contiguous").args("cuda")
    copies = [t.clone() for t in args[:3]]
    OPS.linf_step(*args)
    OPS.l2_step(*args)
    assert all(torch.equal(t, c) for t, c in zip(args[:3], copies))


def test_de_trial_cuda_rejects_bad_donors():
    pop, d, lower, upper, _ = op_samples.de_problem(2, 6, 1, 3, torch.float32, _gen(8))
    donors = d.donors.clone()
    donors[1, 2, 0] = 6
    with pytest.raises(RuntimeError, match="donors must lie in"):
        OPS.de_trial(*_cuda(pop, donors, d.cross_u, d.cross_j, d.resample_u, lower, upper), 0.5, 0.9, True)


def test_mk_mmd_cuda_gradcheck():
    g = _gen(12)
    x = torch.randn(7, 4, generator=g, dtype=torch.float64).cuda().requires_grad_()
    y = (torch.randn(9, 4, generator=g, dtype=torch.float64) + 0.3).cuda().requires_grad_()
    for unbiased in (False, True):
        assert torch.autograd.gradcheck(lambda a, b: ops.mk_mmd(a, b, [0.5, 1.5, 4.0], unbiased=unbiased), (x, y))


def test_mk_mmd_cuda_on_second_device_if_any():
    if torch.cuda.device_count() < 2:
        pytest.skip("one GPU")
    g = _gen(13)
    x = torch.randn(20, 3, generator=g, dtype=torch.float64).to("cuda:1")
    y = (torch.randn(30, 3, generator=g, dtype=torch.float64) + 0.2).to("cuda:1")
    got = OPS.mk_mmd(x, y, [1.0], False)
    assert got.device == x.device
    torch.testing.assert_close(got.cpu(), OPS.mk_mmd(x.cpu(), y.cpu(), [1.0], False), rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ NaN inputs (denormals: test_ops.py's test_linf_step_keeps_denormals
# and the registry's denormal case)
# The policy (csrc/kernel_math.h): NaN in -> NaN out in every op; de_build maps a NaN row or
# column to pixel 0; de_select_ never picks a trial whose fitness is NaN (registry cases).

def _same_nans_and_values(got, want, **tol):
    assert torch.equal(got.isnan().cpu(), want.isnan())
    torch.testing.assert_close(got.cpu(), want, equal_nan=True, **(tol or dict(rtol=0, atol=0)))


@pytest.mark.parametrize("op", ["linf_step", "l2_step"])
@pytest.mark.parametrize("where", ["x_adv", "grad", "x_nat"])
def test_step_ops_cuda_nan_in_nan_out(op, where):
    sample = op_samples.sample(op, "f32-7x3x9x11-alpha_per_sample-bounds_channel-contiguous")
    args = list(sample.args("cpu"))
    i = ["x_adv", "grad", "x_nat"].index(where)
    args[i] = args[i].clone()
    args[i][2, 1, 4, 5] = NAN
    want = getattr(OPS, op)(*args)
    got = getattr(OPS, op)(*_cuda(*args))
    assert want[2, 1, 4, 5].isnan() and got[2, 1, 4, 5].isnan()
    _same_nans_and_values(got, want, **({} if op == "linf_step" else _step_tol(sample.dtype)))


@pytest.mark.parametrize("op", ["linf_step", "l2_step"])
@pytest.mark.parametrize("bad", [NAN, float("inf")])
def test_step_ops_cuda_check_x_nat_in_the_kernels_pass(op, bad):
    """check_x_nat=True (a direct call): the CUDA kernels flag a NaN/Inf x_nat in their own pass,
    as the CPU kernels do (same ValueError), on the vector and the scalar path; a finite x_nat
    gives the same bits as without the check."""
    for layout in ("contiguous", "offset"):
        sample = op_samples.sample(op, f"f32-5x3x8x8-alpha_per_sample-bounds_channel-{layout}")
        args = sample.args("cuda")
        kernel = getattr(OPS, op)
        assert torch.equal(kernel(*args, True), kernel(*args))
        for pos in (0, 3 * 64 + 5, 5 * 3 * 64 - 1):
            x_nat = args[2].clone()
            x_nat.view(-1)[pos] = bad
            with pytest.raises(ValueError, match=rf"x_nat has 1 NaN/Inf values \(samples \[{pos // 192}\]\)"):
                kernel(args[0], args[1], x_nat, *args[3:], True)


def test_de_trial_cuda_nan_in_nan_out():
    sample = op_samples.sample("de_trial", "f32-B5-P11-k2-C3-F0.9-CR0.3-clip")  # CR = 0.3: parents' genes survive
    args = list(sample.args("cpu"))
    args[0] = args[0].clone()
    args[0][1, 3, :] = NAN  # one candidate all NaN: the genes its trial keeps, and the trials it donates to
    want = OPS.de_trial(*args)
    got = OPS.de_trial(*_cuda(*args))
    assert want[1, 3].isnan().any()
    _same_nans_and_values(got, want)


@pytest.mark.parametrize("add", [False, True])
def test_de_build_cuda_nan_coordinates_go_to_pixel_0_and_nan_values_stay(add):
    sample = op_samples.sample("de_build", "f32-B3-P6-k1-C3-contiguous-replace")
    images, cand, _ = sample.args("cpu")
    cand[2, 1, 0, :2] = torch.tensor([NAN, 6.999])  # NaN row: row 0
    cand[0, 4, 0, :2] = torch.tensor([NAN, NAN])  # pixel (0, 0)
    cand[1, 5, 0, 2] = NAN  # a NaN value is written (or added) as NaN
    want = OPS.de_build(images, cand, add)
    got = OPS.de_build(*_cuda(images, cand), add)
    _same_nans_and_values(got, want)
    base = images[0, :, 0, 0] if add else 0.0
    assert torch.equal(want[0, 4, :, 0, 0], base + cand[0, 4, 0, 2:])
    assert torch.equal(got[2, 1, :, 0, 6].cpu(), (images[2, :, 0, 6] if add else 0.0) + cand[2, 1, 0, 2:])
    assert got[1, 5, 0].isnan().sum() == 1


@pytest.mark.parametrize("unbiased", [False, True])
def test_mk_mmd_cuda_nan_in_nan_out(unbiased):
    x, y, sigmas, _ = op_samples.sample("mk_mmd", "f32-n17-m29-d5-biased-contiguous").args("cpu")
    x[3, 1] = NAN
    for device in ("cpu", "cuda"):
        xd, yd = x.to(device), y.to(device)
        assert OPS.mk_mmd(xd, yd, sigmas, unbiased).isnan()
        assert OPS._mk_mmd_with_grad(xd, yd, sigmas, unbiased)[0].isnan()


# ------------------------------------------------------------------ autocast, streams

@pytest.mark.parametrize("unbiased", [False, True])
def test_mk_mmd_cuda_under_fp16_autocast_computes_in_float32(unbiased):
    """fp16 autocast around mk_mmd changes nothing: float32 latents give the float32 value and
    gradient they give outside autocast (the tiles' matrix products are not run in half)."""
    g = _gen(31)
    x = torch.randn(300, 16, generator=g).cuda()
    y = (torch.randn(200, 16, generator=g) + 0.3).cuda()
    sig = [0.5, 2.0, 8.0]
    want = ops.mk_mmd(x, y, sig, unbiased=unbiased)
    xg, yg = x.clone().requires_grad_(), y.clone().requires_grad_()
    want_grads = torch.autograd.grad(ops.mk_mmd(xg, yg, sig, unbiased=unbiased), (xg, yg))
    with torch.autocast("cuda", dtype=torch.float16):
        got = ops.mk_mmd(x, y, sig, unbiased=unbiased)
        direct = OPS.mk_mmd(x, y, sig, unbiased)
        with_grad = ops.mk_mmd(xg, yg, sig, unbiased=unbiased)
    assert got.dtype == direct.dtype == with_grad.dtype == torch.float32
    assert torch.equal(got, want) and torch.equal(direct, want) and torch.equal(with_grad.detach(), want)
    grads = torch.autograd.grad(with_grad, (xg, yg))
    assert all(gr.dtype == torch.float32 and torch.equal(gr, w) for gr, w in zip(grads, want_grads))


def _call(op, args):
    """The op's result; for the in-place de_select_, the population and fitness it updated."""
    out = getattr(OPS, op)(*args)
    return (args[0], args[1]) if op == "de_select_" else out


@pytest.mark.parametrize("sample", [op_samples.samples(op, opcheck=True)[-1].param() for op in op_samples.OPS_COVERED])
def test_ops_run_on_the_current_stream(sample):
    """On a side stream that first sleeps, then writes the inputs, each op gives the default
    stream's result: its kernels are queued on the current stream, after the writes (a kernel
    on another stream would read the NaN/zero placeholders before they are overwritten)."""
    want = _call(sample.op, sample.args("cuda"))
    src = sample.args("cuda")
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        args = tuple(torch.full_like(t, NAN if t.is_floating_point() else 0) if isinstance(t, torch.Tensor) else t
                     for t in src)
        torch.cuda._sleep(50_000_000)  # tens of milliseconds of GPU time on the side stream
        for a, s in zip(args, src):
            if isinstance(a, torch.Tensor):
                a.copy_(s)
        got = _call(sample.op, args)
    side.synchronize()
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        assert torch.equal(g, w)


# ------------------------------------------------------------------ past 2^31 elements, past the MMD chunk cap

@pytest.mark.slow
@pytest.mark.parametrize("layout", ["contiguous", "offset"])
def test_linf_step_cuda_over_2_pow_31_elements(layout):
    """linf_step over 2.16e9 > 2^31 elements (float4 path, and the scalar path through a storage
    offset): 64-bit indexing everywhere. Inputs drawn on the GPU (a seeded CUDA generator: 26 GiB
    of CPU draws would take minutes); checked sample by sample against the twin, bit for bit."""
    _need_free_gpu_memory(40, "four float32 tensors of 2.16e9 elements")
    B, C, H, W = 11, 3, 8192, 8000
    n = B * C * H * W
    assert n > 2**31
    g = torch.Generator(device="cuda").manual_seed(41)

    def draw():
        flat = torch.empty(n + (layout == "offset"), device="cuda")
        return flat[layout == "offset":].normal_(generator=g).view(B, C, H, W)

    x_nat, grad = draw(), draw()
    x_adv = draw().mul_(0.05).add_(x_nat)
    grad.masked_fill_(grad.abs() < 0.2, 0.0)
    alpha = torch.rand(B, generator=g, device="cuda") * 0.5
    eps = torch.rand(B, generator=g, device="cuda") * 2.0
    lo, hi = torch.tensor([-1.0, -2.0, -0.5], device="cuda"), torch.tensor([1.0, 0.5, 2.0], device="cuda")
    out = OPS.linf_step(x_adv, grad, x_nat, alpha, eps, lo, hi)
    for b in range(B):
        s = slice(b, b + 1)
        want = ref.linf_step_reference(x_adv[s], grad[s], x_nat[s], alpha[s], eps[s], lo, hi)
        assert torch.equal(out[s], want), f"sample {b} (elements from {b * C * H * W})"


@pytest.mark.slow
def test_de_build_cuda_over_2_pow_31_elements():
    """de_build writing 2.148e9 > 2^31 output elements; checked P-chunk by P-chunk against the twin."""
    _need_free_gpu_memory(12, "a float32 output of 2.15e9 elements")
    B, P, k, C, H, W = 2, 87_400, 2, 3, 64, 64
    assert B * P * C * H * W > 2**31
    g = _gen(42)
    pop, _, _, _, images = op_samples.de_problem(B, P, k, C, torch.float32, g, H=H, W=W)
    images, cand = _cuda(images, pop.view(B, P, k, 2 + C))
    out = OPS.de_build(images, cand, True)
    for p0 in range(0, P, 4096):
        part = slice(p0, p0 + 4096)
        assert torch.equal(out[:, part], ref.de_build_reference(images, cand[:, part], True)), f"candidates {p0}+"


def _mmd_float64_by_row_blocks(x, y, sigmas, unbiased, rows=1024):
    """MMD^2 in float64 from row blocks of the kernel matrix (never all of it at once)."""
    z = torch.cat([x, y]).double()
    n, N = x.shape[0], z.shape[0]
    zz = (z * z).sum(1)
    sums = torch.zeros(3, dtype=torch.float64, device=z.device)  # xx, yy, xy
    for i0 in range(0, N, rows):
        a = z[i0:i0 + rows]
        d2 = (zz[i0:i0 + rows, None] + zz[None] - 2.0 * (a @ z.T)).clamp_min_(0.0)
        if unbiased:
            d2[torch.arange(a.shape[0]), torch.arange(i0, i0 + a.shape[0])] = float("inf")  # leave i == j out
        k = sum(torch.exp(d2 * (-0.5 / (s * s))) for s in sigmas)
        r_x, r_y = k[:, :n].sum(1), k[:, n:].sum(1)
        i_x = torch.arange(i0, i0 + a.shape[0], device=z.device) < n
        sums += torch.stack([r_x[i_x].sum(), r_y[~i_x].sum(), r_y[i_x].sum()])
    m = N - n
    nxx, nyy = (n * (n - 1), m * (m - 1)) if unbiased else (n * n, m * m)
    return sums[0] / nxx + sums[1] / nyy - 2.0 * sums[2] / (n * m)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_mk_mmd_cuda_past_the_column_chunk_cap(dtype):
    """n + m = 270,000 > 64 chunks x 4096 columns (csrc/cuda/mk_mmd.cu): the first tiles' chunks
    loop past their nominal width. Value against a float64 row-block sum; gradient against a
    central difference along a random direction (three more forward passes, no n x m matrix)."""
    _need_free_gpu_memory(16, "float64 row blocks of a 270,000-point kernel matrix")
    g = _gen(43)
    x = torch.randn(150_000, 4, generator=g, dtype=dtype).cuda()
    y = (torch.randn(120_000, 4, generator=g, dtype=dtype) * 1.2 + 0.5).cuda()
    sigmas = ops.dan_sigmas(x, y)
    value, gx, gy = OPS._mk_mmd_with_grad(x, y, sigmas, True)
    want = _mmd_float64_by_row_blocks(x, y, sigmas, True)
    torch.testing.assert_close(value.double(), want, rtol=1e-3 if dtype == torch.float32 else 1e-8, atol=0)
    if dtype == torch.float64:
        vx, vy = torch.randn(x.shape, generator=g, dtype=dtype).cuda(), torch.randn(y.shape, generator=g,
                                                                                    dtype=dtype).cuda()
        h = 1e-4
        plus = OPS.mk_mmd(x + h * vx, y + h * vy, sigmas, True)
        minus = OPS.mk_mmd(x - h * vx, y - h * vy, sigmas, True)
        slope = (gx * vx).sum() + (gy * vy).sum()
        torch.testing.assert_close((plus - minus) / (2 * h), slope, rtol=1e-5, atol=1e-12)
