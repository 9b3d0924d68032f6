"""Each fused op beside its eager pure-PyTorch twin and ``torch.compile`` of that twin, one benchmark
group per op and case (cases: :mod:`advrobust.bench.cases`). The element-wise steps' groups also hold
``copy``, a plain ``dst.copy_(src)`` of one image tensor: the bandwidth yardstick."""
from __future__ import annotations

import pytest
import torch

from advrobust import ops
from advrobust.ops import reference as ref

OPS = torch.ops.advrobust
IMPLS = ("kernel", "eager", "compiled")


def twin(impl: str, kernel, eager):
    """The callable of ``impl``: the fused kernel, its eager twin or the compiled twin."""
    return {"kernel": kernel, "eager": eager}.get(impl) or torch.compile(eager, dynamic=False)


@pytest.fixture(scope="module")
def step_args(step_case, device):
    """x_adv, grad, x_nat (B, C, H, W), per-sample alpha and eps, per-channel bounds."""
    g = torch.Generator(device).manual_seed(0)
    B, C = step_case.shape[:2]
    x_adv, grad, x_nat = (torch.randn(*step_case.shape, generator=g, device=device) for _ in range(3))
    return (x_adv, grad, x_nat, torch.full((B,), 0.01, device=device), torch.full((B,), 0.03, device=device),
            torch.full((C,), -3.0, device=device), torch.full((C,), 3.0, device=device))


@pytest.mark.parametrize("impl", (*IMPLS, "direct call"))
@pytest.mark.parametrize("op", ["linf_step", "l2_step"])
def test_step(measure, step_case, step_args, op, impl):
    """kernel: torch.ops.advrobust.<op>; direct call: the public advrobust.ops.<op> with its checks."""
    if impl == "direct call":
        public = getattr(ops, op)
        x_adv, grad, x_nat, alpha, eps, lo, hi = step_args
        fn = lambda *_: public(x_adv, grad, x_nat, alpha=alpha, eps=eps, lo=lo, hi=hi)  # noqa: E731
    else:
        fn = twin(impl, getattr(OPS, op), getattr(ref, f"{op}_reference"))
    x = step_args[0]
    measure(lambda: fn(*step_args), group=f"{op} {step_case.label}", impl=impl,
            traffic_bytes=4 * x.numel() * x.element_size())  # three inputs read, one output written


@pytest.mark.parametrize("op", ["linf_step", "l2_step"])
def test_step_copy(measure, step_case, step_args, op):
    x = step_args[0]
    dst = torch.empty_like(x)
    measure(lambda: dst.copy_(x), group=f"{op} {step_case.label}", impl="copy",
            traffic_bytes=2 * x.numel() * x.element_size())


@pytest.mark.parametrize("impl", IMPLS)
def test_de_build(measure, de_build_case, device, impl):
    c = de_build_case
    if impl == "compiled" and not c.compile:
        pytest.skip(f"no compiled twin at {c.label} (compile=False in advrobust.bench.cases.DE_BUILDS: "
                    "its compilation takes minutes)")
    g = torch.Generator(device).manual_seed(0)
    C, H, W = c.chw
    images = torch.randn(c.B, C, H, W, generator=g, device=device)
    cand = torch.cat([torch.rand(c.B, c.P, c.k, 1, generator=g, device=device) * H,
                      torch.rand(c.B, c.P, c.k, 1, generator=g, device=device) * W,
                      torch.randn(c.B, c.P, c.k, C, generator=g, device=device)], dim=-1)
    fn = twin(impl, OPS.de_build, ref.de_build_reference)
    measure(lambda: fn(images, cand, False), group=f"de_build {c.label}", impl=impl)


@pytest.mark.parametrize("impl", ("kernel", "eager"))
def test_de_trial(measure, de_trial_case, device, impl):
    c = de_trial_case
    g = torch.Generator(device).manual_seed(0)
    pop = torch.rand(c.B, c.P, c.D, generator=g, device=device) * 100
    draws = ops.de_draws(c.B, c.P, c.D, device=device, generator=g)
    lower, upper = torch.zeros(c.D, device=device), torch.full((c.D,), 100.0, device=device)
    args = (pop, draws.donors, draws.cross_u, draws.cross_j, draws.resample_u, lower, upper, 0.5, 1.0, True)
    fn = OPS.de_trial if impl == "kernel" else ref.de_trial_reference
    measure(lambda: fn(*args), group=f"de_trial {c.label}", impl=impl)


@pytest.mark.parametrize("impl", IMPLS)
def test_mk_mmd_forward_backward(measure, mmd_case, device, impl):
    c = mmd_case
    if impl not in c.impls:
        pytest.skip(f"{impl} is not run at {c.label} (advrobust.bench.cases.MMDS)")
    g = torch.Generator(device).manual_seed(0)
    x0 = torch.randn(c.n, c.d, generator=g, device=device)
    y0 = torch.randn(c.n, c.d, generator=g, device=device) + 0.1
    sigmas = ops.dan_sigmas(x0, y0, kernel_num=c.K) if c.K == 5 else \
        [s * ops.dan_sigmas(x0, y0, kernel_num=1)[0] for s in ops.sigmas_from_variances()[:c.K]]
    fn = twin(impl, lambda a, b: ops.mk_mmd(a, b, sigmas, unbiased=True),
              lambda a, b: ref.mk_mmd_reference(a, b, sigmas, True))

    def step():
        x, y = x0.clone().requires_grad_(), y0.clone().requires_grad_()
        loss = fn(x, y)
        loss.backward()
        return loss

    measure(step, group=f"mk_mmd fwd+bwd {c.label}", impl=impl)
