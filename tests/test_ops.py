"""The fused operators against their pure-PyTorch twins, opcheck, gradcheck and bad input."""
import math
import warnings

import pytest
import torch

import advrobust
from advrobust import ops
from advrobust.ops import _backend
from advrobust.ops import reference as ref
import op_samples
from conftest import DEVICES, cuda_test_policy

OPS = torch.ops.advrobust


def test_extension_is_built():
    # Every other test here exercises the compiled kernels; a silent fallback would hide a broken build.
    assert advrobust.has_cpu_kernels()
    assert hasattr(OPS, "linf_step") and hasattr(OPS, "_mk_mmd_with_grad")


class _OnCuda:
    """Stands in for a CUDA tensor on a machine without one: use_kernels only reads .device."""
    device = torch.device("cuda")


def test_cuda_tensor_without_cuda_kernels_warns_once_and_runs_the_twin(monkeypatch):
    """No silent slow path: a build without CUDA kernels says so (once) when given a CUDA tensor."""
    monkeypatch.setattr(_backend, "has_cpu_kernels", lambda: True)
    monkeypatch.setattr(_backend, "has_cuda_kernels", lambda: False)
    monkeypatch.setattr(_backend, "_warned_cuda_twin", False)
    with pytest.warns(RuntimeWarning, match=r"advrobust ops: .*pure-PyTorch twins.*FORCE_CUDA=1 pip install "
                                            r"--no-build-isolation -e \.") as record:
        assert _backend.use_kernels(_OnCuda()) is False
        assert _backend.use_kernels(_OnCuda()) is False
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process: no second warning
        assert _backend.use_kernels(_OnCuda()) is False
        assert _backend.use_kernels(torch.zeros(1)) is True  # CPU tensors keep their kernels


def test_use_kernels_picks_the_device_kernels_silently(monkeypatch):
    monkeypatch.setattr(_backend, "_warned_cuda_twin", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monkeypatch.setattr(_backend, "has_cpu_kernels", lambda: True)
        monkeypatch.setattr(_backend, "has_cuda_kernels", lambda: True)
        assert _backend.use_kernels(_OnCuda()) and _backend.use_kernels(torch.zeros(1))
        assert not _backend.use_kernels(torch.zeros(1, device="meta"))
        monkeypatch.setattr(_backend, "has_cpu_kernels", lambda: False)  # import already warned
        assert not _backend.use_kernels(_OnCuda()) and not _backend.use_kernels(torch.zeros(1))


@pytest.mark.parametrize("cuda_available,has_kernels,policy", [
    (False, False, "skip"), (False, True, "skip"), (True, True, "run"), (True, False, "fail")])
def test_cuda_test_policy(cuda_available, has_kernels, policy):
    """CUDA tests are skipped only without a device; a device with a CPU-only build fails them."""
    assert cuda_test_policy(cuda_available, has_kernels) == policy


# ------------------------------------------------------------------ every op == its twin

def _cpu(op):
    """The op's registry samples the CPU suite runs (not the CUDA grid-size ones)."""
    return op_samples.params(op, cuda_only=False)


def test_registry_ids_are_unique_and_cover_every_op():
    every = [s.full_id for op in op_samples.OPS_COVERED for s in op_samples.samples(op)]
    assert len(every) == len(set(every))
    registered = {name.split("::")[1] for name in torch._C._dispatch_get_all_op_names()
                  if name.startswith("advrobust::")}
    assert registered == set(op_samples.OPS_COVERED)  # a new op gets its samples here
    assert registered == set(ref.REFERENCES) == set(op_samples.TOLERANCES)  # ... its twin and tolerance
    assert all(op_samples.samples(op, opcheck=True) for op in op_samples.OPS_COVERED)


@pytest.mark.parametrize("sample", op_samples.all_params(cuda_only=False))
def test_op_equals_its_reference(sample):
    """Every op on every CPU sample against its pure-PyTorch twin (reference.REFERENCES), within
    op_samples.TOLERANCES: linf_step and the DE ops bit for bit, l2_step and the MMD to rounding
    (_mk_mmd_with_grad: value, and gradients against autograd through the twin)."""
    want = ref.REFERENCES[sample.op](*sample.args("cpu"))
    got = op_samples.call(sample.op, sample.args("cpu"))
    op_samples.assert_matches_reference(sample, got, want)


# ------------------------------------------------------------------ linf_step / l2_step

@pytest.mark.parametrize("sample", _cpu("linf_step") + _cpu("l2_step"))
def test_step_ops_return_a_new_contiguous_tensor(sample):
    args = sample.args("cpu")
    got = getattr(OPS, sample.op)(*args)
    assert got.shape == args[0].shape and got.is_contiguous()


def _step_inputs(shape, seed):
    """Float32 step arguments with per-sample alpha/eps and per-channel bounds, on the CPU."""
    build = op_samples._step_builder(shape, torch.float32, True, "channel", "contiguous", None)
    return build(torch.Generator().manual_seed(seed), torch.device("cpu"))


@pytest.mark.parametrize("device", DEVICES)
def test_linf_step_keeps_denormals(device):
    """Subnormal float32 numbers are neither flushed to zero nor mis-signed, on every device:
    sign(1e-40) = +1, and values near FLT_MIN pass through a step that leaves them alone."""
    tiny = torch.finfo(torch.float32).tiny
    x = torch.tensor([[1e-40, -1e-40, tiny, -tiny, 3e-39, 0.0]], device=device)
    g = torch.tensor([[1e-40, -1e-40, 0.0, 0.0, 0.0, 1e-40]], device=device)
    moved = ops.linf_step(torch.zeros_like(x), g, torch.zeros_like(x), alpha=0.5, eps=1.0)
    assert moved.tolist() == [[0.5, -0.5, 0.0, 0.0, 0.0, 0.5]]
    kept = ops.linf_step(x, g, x, alpha=0.5, eps=0.0)  # eps = 0: back onto x_nat, bit for bit
    assert torch.equal(kept, x) and kept[0, 0].item() != 0.0
    assert torch.equal(ops.linf_step(x, torch.zeros_like(x), x, alpha=0.5, eps=1.0, lo=-1.0, hi=1.0), x)


def test_l2_step_same_bits_sample_by_sample_and_in_two_passes():
    """The CPU kernel runs sample by sample with >= 4 samples per thread, else in two passes: same bits."""
    args = _step_inputs((9, 3, 100, 100), seed=8)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # 9 samples >= 8: sample by sample, split over 2 threads
        by_sample = OPS.l2_step(*args)
        torch.set_num_threads(8)  # 9 < 32: two passes, 27 rows of 10,000 elements over 8 threads
        two_passes = OPS.l2_step(*args)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(by_sample, two_passes)


def test_l2_step_geometry_by_hand():
    # One sample, d = u + alpha g/||g|| = (0, 0) + 2 * (3, 4)/5 = (1.2, 1.6), ||d|| = 2 > eps = 1
    x_nat = torch.zeros(1, 2)
    got = ops.l2_step(x_nat.clone(), torch.tensor([[3.0, 4.0]]), x_nat, alpha=2.0, eps=1.0)
    torch.testing.assert_close(got, torch.tensor([[0.6, 0.8]]))
    # inside the ball: no projection
    got = ops.l2_step(x_nat.clone(), torch.tensor([[3.0, 4.0]]), x_nat, alpha=0.5, eps=1.0)
    torch.testing.assert_close(got, torch.tensor([[0.3, 0.4]]))


def test_l2_step_zero_gradient_and_zero_eps_make_no_nan():
    x_nat = torch.randn(3, 2, 5, 5)
    x_adv = x_nat + 0.01 * torch.randn_like(x_nat)
    grad = torch.randn_like(x_nat)
    grad[1] = 0.0
    out = ops.l2_step(x_adv, grad, x_nat, alpha=0.5, eps=torch.tensor([1.0, 1.0, 0.0]))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1], x_adv[1])  # no gradient: no step (already inside the ball)
    torch.testing.assert_close(out[2], x_nat[2])  # eps = 0: back onto x_nat


def test_linf_step_by_hand_and_fgsm_form():
    x = torch.tensor([[0.0, 1.0, -2.0, 5.0]])
    g = torch.tensor([[2.0, -1.0, 0.0, 3.0]])
    out = ops.linf_step(x, g, x, alpha=0.1, eps=0.1, lo=-1.0, hi=5.0)
    torch.testing.assert_close(out, torch.tensor([[0.1, 0.9, -1.0, 5.0]]))


def test_step_ops_do_not_modify_inputs():
    x_adv, grad, x_nat = torch.randn(3, 4, 5), torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    copies = [t.clone() for t in (x_adv, grad, x_nat)]
    for op in (ops.linf_step, ops.l2_step):
        op(x_adv, grad, x_nat, alpha=0.1, eps=0.2, lo=-1.0, hi=1.0)
    for t, c in zip((x_adv, grad, x_nat), copies):
        assert torch.equal(t, c)


# ------------------------------------------------------------------ differential evolution

@pytest.mark.parametrize("sample", _cpu("de_trial"))
def test_de_trial_stays_within_bounds(sample):
    args = sample.args("cpu")
    got = OPS.de_trial(*args)
    lower, upper = args[5], args[6]
    assert ((got >= lower) & (got <= upper)).all()


@pytest.mark.parametrize("sample", _cpu("de_build"))
def test_de_build_layout_and_changed_pixels(sample):
    images, cand, add = sample.args("cpu")
    got = OPS.de_build(images, cand, add)
    batch = got.flatten(0, 1)
    assert batch.data_ptr() == got.data_ptr()
    # the output follows channels-last images: its (B*P, C, H, W) view is channels-last, no copy needed
    channels_last = not images.is_contiguous() and images.is_contiguous(memory_format=torch.channels_last)
    assert batch.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    changed = (got != images.unsqueeze(1)).any(dim=2).flatten(2).sum(-1)
    assert (changed <= cand.shape[2]).all()  # at most k pixels per image


def test_de_build_by_hand():
    images = torch.zeros(1, 2, 3, 4)
    cand = torch.tensor([[[[1.7, 3.2, 5.0, -6.0]]]])  # row 1, column 3, values (5, -6)
    out = ops.de_build(images, cand)
    expected = images.clone()
    expected[0, :, 1, 3] = torch.tensor([5.0, -6.0])
    assert torch.equal(out[0, 0], expected[0])
    out_add = ops.de_build(images + 1.0, cand, add=True)
    assert out_add[0, 0, 0, 1, 3] == 6.0 and out_add[0, 0, 1, 1, 3] == -5.0


@pytest.mark.parametrize("sample", _cpu("de_select_"))
def test_de_select_ties_go_to_the_trial_and_nan_loses(sample):
    pop, fit, trial, tfit = sample.args("cpu")
    OPS.de_select_(pop, fit, trial, tfit)
    assert torch.equal(pop[0, 0], trial[0, 0])  # the tie went to the trial
    assert not torch.equal(pop[-1, 1], trial[-1, 1])  # the NaN trial fitness lost


def test_de_draws_donors_are_distinct_and_not_self():
    d = ops.de_draws(8, 5, 3, generator=torch.Generator().manual_seed(0))
    own = torch.arange(5).view(1, 5, 1)
    assert ((d.donors >= 0) & (d.donors < 5)).all()
    assert (d.donors != own).all()
    s = d.donors.sort(-1).values
    assert (s[..., 1:] != s[..., :-1]).all()
    big = ops.de_draws(4, 400, 5, generator=torch.Generator().manual_seed(1))
    assert (big.donors != torch.arange(400).view(1, 400, 1)).all()
    # all P - 1 other members are reachable as r1, roughly uniformly
    counts = torch.bincount(((big.donors[..., 0] - torch.arange(400)) % 400).flatten(), minlength=400)
    assert counts[0] == 0 and (counts[1:] > 0).float().mean() > 0.9


def test_de_draws_are_reproducible():
    a = ops.de_draws(2, 10, 5, generator=torch.Generator().manual_seed(7))
    b = ops.de_draws(2, 10, 5, generator=torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


# ------------------------------------------------------------------ MMD

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("unbiased", [False, True])
def test_mk_mmd_backward_equals_autograd_through_twin(device, unbiased):
    gen = torch.Generator().manual_seed(11)
    x0 = torch.randn(23, 6, generator=gen, dtype=torch.float64).to(device)
    y0 = (torch.randn(31, 6, generator=gen, dtype=torch.float64) + 0.5).to(device)
    sig = [0.3, 1.0, 2.5, 7.0]
    x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
    gx, gy = torch.autograd.grad(ops.mk_mmd(x, y, sig, unbiased=unbiased) * 3.0, (x, y))
    xr, yr = x0.clone().requires_grad_(), y0.clone().requires_grad_()
    rx, ry = torch.autograd.grad(ref.mk_mmd_reference(xr, yr, sig, unbiased) * 3.0, (xr, yr))
    torch.testing.assert_close(gx, rx, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gy, ry, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("unbiased", [False, True])
def test_mk_mmd_value_and_gradient_paths_agree(unbiased):
    """ops.mk_mmd takes the fused value+gradient op under autograd and the value-only op otherwise;
    the value-only op's own backward (a direct torch.ops call) recomputes the same gradient."""
    gen = torch.Generator().manual_seed(14)
    x = torch.randn(40, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    y = (torch.randn(33, 5, generator=gen, dtype=torch.float64) + 0.4).requires_grad_()
    sig = [0.5, 2.0, 8.0]
    fused = ops.mk_mmd(x, y, sig, unbiased=unbiased)
    assert "_mk_mmd_with_grad" in type(fused.grad_fn).__name__
    with torch.no_grad():
        value_only = ops.mk_mmd(x, y, sig, unbiased=unbiased)
    assert fused.requires_grad and not value_only.requires_grad
    torch.testing.assert_close(fused.detach(), value_only, rtol=1e-12, atol=1e-15)
    value, gx, gy = OPS._mk_mmd_with_grad(x.detach(), y.detach(), sig, unbiased)
    torch.testing.assert_close(value, value_only, rtol=1e-12, atol=1e-15)
    direct = torch.autograd.grad(OPS.mk_mmd(x, y, sig, unbiased) * -2.0, (x, y))
    torch.testing.assert_close(direct[0], -2.0 * gx, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(direct[1], -2.0 * gy, rtol=1e-12, atol=1e-15)
    assert not gx.requires_grad  # first order only
    with_grad = OPS._mk_mmd_with_grad(x, y, sig, unbiased)
    assert with_grad[0].requires_grad and not with_grad[1].requires_grad and not with_grad[2].requires_grad
    for value in (ops.mk_mmd(x, y, sig, unbiased=unbiased), OPS.mk_mmd(x, y, sig, unbiased)):
        with pytest.raises(RuntimeError, match="differentiable once"):
            torch.autograd.grad(value, x, create_graph=True)


def test_mk_mmd_gradcheck():
    gen = torch.Generator().manual_seed(12)
    x = torch.randn(7, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    y = (torch.randn(9, 4, generator=gen, dtype=torch.float64) + 0.3).requires_grad_()
    for unbiased in (False, True):
        assert torch.autograd.gradcheck(lambda a, b: ops.mk_mmd(a, b, [0.5, 1.5, 4.0], unbiased=unbiased), (x, y))


def test_mk_mmd_spans_several_tiles():
    # n + m = 2200 rows: more than one block of Z on any device (CPU blocks: 256 rows; GPU: 1906).
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(1300, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    y = (torch.randn(900, 8, generator=gen, dtype=torch.float64) * 0.8).requires_grad_()
    sig = [1.0, 4.0]
    got = ops.mk_mmd(x, y, sig, unbiased=True)
    gx, gy = torch.autograd.grad(got, (x, y))
    want = ref.mk_mmd_reference(x, y, sig, True)
    rx, ry = torch.autograd.grad(want, (x, y))
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gx, rx, rtol=1e-7, atol=1e-12)
    torch.testing.assert_close(gy, ry, rtol=1e-7, atol=1e-12)


def test_mk_mmd_is_zero_for_identical_sets_and_positive_for_shifted():
    x = torch.randn(50, 3, dtype=torch.float64)
    assert abs(ops.mk_mmd(x, x.clone(), [1.0]).item()) < 1e-12
    assert ops.mk_mmd(x, x + 2.0, [1.0]).item() > 0.1


def test_bandwidth_helpers():
    x, y = torch.randn(13, 4, dtype=torch.float64), torch.randn(9, 4, dtype=torch.float64)
    z = torch.cat([x, y])
    d2 = torch.cdist(z, z) ** 2
    mean_offdiag = d2.sum() / (22 * 21)
    sig = ops.dan_sigmas(x, y, kernel_mul=2.0, kernel_num=5)
    bandwidths = [2 * s * s for s in sig]  # DAN's exp(-d2 / bandwidth_k)
    for k, bw in enumerate(bandwidths):
        assert math.isclose(bw, mean_offdiag.item() / 4 * 2 ** k, rel_tol=1e-9)
    v = ops.sigmas_from_variances()
    assert len(v) == 19 and math.isclose(v[0], 1e-3) and math.isclose(v[-1], 1e3)


# ------------------------------------------------------------------ opcheck

@pytest.mark.parametrize("sample", op_samples.all_params(opcheck=True))
def test_opcheck(sample):
    """Schema, fake kernel, autograd registration and dynamic-shape tracing of each op (all four
    checks of ``torch.library.opcheck``) on the registry's opcheck cases."""
    torch.library.opcheck(getattr(OPS, sample.op).default, sample.args("cpu", requires_grad=True))


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("op", [ops.linf_step, ops.l2_step])
def test_step_bad_input_raises_clear_errors(op):
    x = torch.randn(4, 3, 5, 5)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        op(x, x, x, alpha=0.1, eps=-0.1)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        op(x, x, x, alpha=torch.tensor([0.1, -0.1, 0.1, 0.1]), eps=0.1)
    with pytest.raises(ValueError, match="grad has shape"):
        op(x, x[:, :2], x, alpha=0.1, eps=0.1)
    with pytest.raises(TypeError, match="float32 or float64"):
        op(x.long(), x.long(), x.long(), alpha=0.1, eps=0.1)
    with pytest.raises(TypeError, match="x_nat is torch.float64"):
        op(x, x, x.double(), alpha=0.1, eps=0.1)
    with pytest.raises(ValueError, match="non-empty batch"):
        op(x[:0], x[:0], x[:0], alpha=0.1, eps=0.1)
    with pytest.raises(ValueError, match="the batch has B=4"):
        op(x, x, x, alpha=0.1, eps=torch.rand(3))
    with pytest.raises(ValueError, match="one value per channel"):
        op(x, x, x, alpha=0.1, eps=0.1, lo=torch.zeros(5))
    with pytest.raises(ValueError, match="lo must be <= hi"):
        op(x, x, x, alpha=0.1, eps=0.1, lo=1.0, hi=0.0)


def test_direct_op_calls_check_their_arguments():
    x = torch.randn(4, 3)
    with pytest.raises(RuntimeError, match="grad has shape"):
        OPS.linf_step(x, x[:2], x, torch.ones(1), torch.ones(1), None, None)
    with pytest.raises(RuntimeError, match="eps must have 1 or 4 values"):
        OPS.l2_step(x, x, x, torch.ones(1), torch.ones(3), None, None)
    with pytest.raises(RuntimeError, match="x has 3 features, y has 2"):
        OPS.mk_mmd(x, torch.randn(5, 2), [1.0], False)
    pop, draws, lower, upper, _ = op_samples.de_problem(1, 5, 1, 3, torch.float32, torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError, match="donors must lie in"):
        OPS.de_trial(pop, draws.donors + 10, draws.cross_u, draws.cross_j, draws.resample_u, lower, upper,
                     0.5, 1.0, True)


def test_mmd_and_de_bad_input():
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match="sigma must be finite and > 0"):
        ops.mk_mmd(x, x, [1.0, 0.0])
    with pytest.raises(ValueError, match="must be 2-D"):
        ops.mk_mmd(x.view(5, 3, 1), x, [1.0])
    with pytest.raises(ValueError, match="n, m >= 2"):
        ops.mk_mmd(x[:1], x, [1.0], unbiased=True)
    with pytest.raises(TypeError, match="float32 or float64"):
        ops.mk_mmd(x.int(), x.int(), [1.0])
    with pytest.raises(ValueError, match="at least 4"):
        ops.de_draws(2, 3, 5)
    with pytest.raises(ValueError, match=r"candidates must be \(2, P, k, 5\)"):
        ops.de_build(torch.randn(2, 3, 4, 4), torch.randn(2, 6, 1, 4))


def test_step_params_checked_once_give_the_same_step():
    x, g = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    eps = torch.rand(5)
    p = ops.step_params(x, alpha=0.1, eps=eps, lo=torch.full((3,), -1.0), hi=1.0)
    for op in (ops.linf_step, ops.l2_step):
        assert torch.equal(op(x, g, x, params=p), op(x, g, x, alpha=0.1, eps=eps, lo=torch.full((3,), -1.0), hi=1.0))
        with pytest.raises(ValueError, match="not both"):
            op(x, g, x, alpha=0.1, params=p)
        with pytest.raises(ValueError, match="another batch"):
            op(x[:2], g[:2], x[:2], params=p)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        ops.step_params(x, alpha=0.1, eps=-eps)


@pytest.mark.parametrize("op", [ops.linf_step, ops.l2_step])
def test_step_ops_check_values_as_the_attacks_do(op):
    x = torch.randn(4, 3, 5, 5)
    x_nat = x.clone()
    x_nat[2, 1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"x_nat has 1 NaN/Inf values \(samples \[2\]\)"):
        op(x, x, x_nat, alpha=0.1, eps=0.1)
    for kw, err, msg in [(dict(lo=float("nan")), ValueError, "lo must be a finite number"),
                         (dict(hi=torch.tensor([0.0, float("nan"), 1.0])), ValueError, "hi has NaN"),
                         (dict(alpha=float("inf")), ValueError, "alpha must be a finite number"),
                         (dict(eps="0.1"), TypeError, "eps must be a number"),
                         (dict(eps=True), TypeError, "eps must be a number")]:
        args = {"alpha": 0.1, "eps": 0.1, **kw}
        with pytest.raises(err, match=msg):
            op(x, x, x, **args)


# ------------------------------------------------------------------ a direct call's NaN/Inf x_nat

def _nonfinite_positions(shape):
    """Flat positions that reach every part of the kernels' passes: the first and last element,
    a vector's tail, a middle row and the last sample's last channel."""
    n = math.prod(shape)
    return [0, 1, 5, n // 2 + 3, n - shape[-1] - 1, n - 1]


# small and large enough to be split over threads; l2_step: sample by sample (B >= 4 per
# thread) and in two passes
_CHECK_SAMPLES = ["f32-7x3x9x11-alpha_per_sample-bounds_channel-contiguous",
                  "f64-7x3x9x11-alpha_per_sample-bounds_scalar-transposed",
                  "f32-3x3x97x101-alpha_per_sample-bounds_channel-contiguous",
                  "f64-2x1x513x517-alpha_per_sample-bounds_scalar-contiguous"]


@pytest.mark.parametrize("op", ["linf_step", "l2_step"])
@pytest.mark.parametrize("sample_id", _CHECK_SAMPLES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("threads", [1, 2])
def test_direct_call_finds_a_nonfinite_x_nat_in_the_kernels_pass(op, sample_id, bad, threads):
    """check_x_nat=True (a direct call of the wrapper) raises for one NaN/Inf anywhere in x_nat,
    whatever the thread split, names its sample, and changes nothing for a finite x_nat: the
    same bits as without the check."""
    args = op_samples.sample(op, sample_id).args("cpu")
    kernel = getattr(OPS, op)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        assert torch.equal(kernel(*args, True), kernel(*args))
        per_sample = math.prod(args[2].shape[1:])
        for pos in _nonfinite_positions(args[2].shape):
            x_nat = args[2].contiguous().clone()
            x_nat.view(-1)[pos] = bad
            message = rf"{op}: x_nat has 1 NaN/Inf values \(samples \[{pos // per_sample}\]\)"
            with pytest.raises(ValueError, match=message):
                kernel(args[0], args[1], x_nat, *args[3:], True)
            assert kernel(args[0], args[1], x_nat, *args[3:]).shape == x_nat.shape  # unchecked: no error
    finally:
        torch.set_num_threads(saved)


@pytest.mark.parametrize("op", [ops.linf_step, ops.l2_step])
def test_direct_call_names_the_nonfinite_samples_on_both_paths(op, monkeypatch):
    """The kernel's error and the twin's (no kernels) are worded alike; more than 8 samples end in '...'."""
    x = torch.randn(12, 2, 3, 3)
    x_nat = x.clone()
    x_nat[:10, 1, 2, 2] = float("inf")
    x_nat[4, 0, 0, 0] = float("nan")
    message = r"x_nat has 11 NaN/Inf values \(samples \[0, 1, 2, 3, 4, 5, 6, 7\], \.\.\.\); x_nat is the centre"
    with pytest.raises(ValueError, match=message):
        op(x, x, x_nat, alpha=0.1, eps=0.1)
    monkeypatch.setattr("advrobust.ops.steps.use_kernels", lambda t: False)
    with pytest.raises(ValueError, match=message):
        op(x, x, x_nat, alpha=0.1, eps=0.1)
    p = ops.step_params(x, alpha=0.1, eps=0.1)
    assert torch.isnan(op(x, x, x_nat, params=p)).any()  # params=: the caller checked its centre once
