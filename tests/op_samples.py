"""One registry of sample arguments per ``torch.ops.advrobust`` op, shared by every op test.

``samples(op)`` lists the named cases of one op; ``sample.args(device)`` builds its
arguments. Values are always drawn on the CPU with a ``torch.Generator`` seeded from the
case's id (``zlib.crc32``, stable across runs, unlike ``hash``), then moved, and the case's
memory layout (transposed view, storage offset, channels-last) is applied on the target
device, so the CPU and the GPU see the same values in the same layout.

It feeds the one CPU kernel == twin test (tests/test_ops.py: every op against its twin in
``advrobust.ops.reference.REFERENCES``, :func:`call` and :func:`assert_matches_reference`
with the tolerances of :data:`TOLERANCES`), the CUDA == CPU tests (tests/test_ops_cuda.py)
and ``opcheck`` (the cases with ``opcheck=True``). Cases with
``cuda_only=True`` are sizes chosen to make the CUDA launches loop more than once over
their capped grids (see ``GRID_CAPPED``); they are too slow for the CPU suite.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from advrobust import ops

F32, F64 = torch.float32, torch.float64

#: Threads one capped 1-D CUDA launch covers per pass (csrc/cuda/cuda_utils.cuh:
#: kMaxBlocks = 65535 blocks of kThreads = 256); a grid-stride loop covers the rest.
GRID_CAPPED = 65535 * 256


@dataclass(frozen=True)
class Sample:
    """One named argument tuple of one op. ``build(gen, device)`` returns the arguments."""
    op: str
    id: str
    build: Callable[[torch.Generator, torch.device], tuple] = field(repr=False)
    dtype: torch.dtype = F32
    opcheck: bool = False
    cuda_only: bool = False

    @property
    def full_id(self) -> str:
        return f"{self.op}-{self.id}"

    @property
    def seed(self) -> int:
        return zlib.crc32(self.full_id.encode())

    def args(self, device="cpu", requires_grad: bool = False) -> tuple:
        """Fresh arguments on ``device`` (in-place ops may modify them). ``requires_grad``
        marks x and y of the MMD ops (their differentiable inputs) as requiring grad."""
        args = self.build(torch.Generator().manual_seed(self.seed), torch.device(device))
        if requires_grad and self.op in MMD_OPS:
            args = (args[0].detach().requires_grad_(), args[1].detach().requires_grad_()) + args[2:]
        return args

    def param(self):
        """This sample as a ``pytest.param`` whose id is the case's name."""
        import pytest
        return pytest.param(self, id=self.full_id)


def _lay_out(values: torch.Tensor, layout: str, device: torch.device) -> torch.Tensor:
    """``values`` (a contiguous CPU tensor) on ``device`` in ``layout``: 'contiguous',
    'transposed' (last two dims swapped in memory: a view with non-row-major strides),
    'offset' (storage offset 1: contiguous but not 16-byte aligned, the non-vector path)
    or 'channels_last' (4-D only)."""
    if layout == "contiguous":
        return values.to(device)
    if layout == "transposed":
        return values.transpose(-1, -2).contiguous().to(device).transpose(-1, -2)
    if layout == "offset":
        flat = torch.empty(values.numel() + 1, dtype=values.dtype)
        flat[1:] = values.reshape(-1)
        return flat.to(device)[1:].view(values.shape)
    if layout == "channels_last":
        return values.to(device).contiguous(memory_format=torch.channels_last)
    raise ValueError(f"unknown layout {layout!r}")


def _dims(shape) -> str:
    return "x".join(map(str, shape))


def _dname(dtype) -> str:
    return {F32: "f32", F64: "f64"}[dtype]


# ------------------------------------------------------------------ linf_step / l2_step

def _step_builder(shape, dtype, per_sample, bounds, layout, special):
    def build(gen, device):
        def rnd(*s):
            return torch.randn(*s, generator=gen, dtype=dtype)

        x_adv, grad, x_nat = rnd(*shape), rnd(*shape), rnd(*shape)
        grad = grad.masked_fill(grad.abs() < 0.2, 0.0)  # plenty of exact zeros: sign(0) = 0
        B = shape[0]
        if per_sample:
            alpha = torch.rand(B, generator=gen, dtype=dtype) * 0.5
            eps = torch.rand(B, generator=gen, dtype=dtype) * 2.0
            eps[0] = 0.0  # projects onto x_nat
        else:
            alpha, eps = torch.tensor([0.3], dtype=dtype), torch.tensor([1.1], dtype=dtype)
        if special == "denormal":  # subnormal float32: gradients whose sign counts, values that must survive
            tiny = torch.finfo(torch.float32).tiny
            x_nat = x_nat * 1e-39
            x_adv = x_nat.clone()
            grad = torch.where(grad > 0, 1e-40, torch.where(grad < 0, -1e-40, 0.0)).to(dtype)
            x_nat.view(-1)[:4] = torch.tensor([tiny, -tiny, 1e-40, 2 * tiny], dtype=dtype)
        if bounds == "none":
            lo = hi = None
        elif bounds == "scalar":
            lo, hi = torch.tensor([-1.0], dtype=dtype), torch.tensor([1.5], dtype=dtype)
        elif bounds == "lo_only":
            lo, hi = -torch.rand(shape[1], generator=gen, dtype=dtype), None
        else:  # per channel
            lo = -torch.rand(shape[1], generator=gen, dtype=dtype) - 0.2
            hi = torch.rand(shape[1], generator=gen, dtype=dtype) + 0.2
        small = [None if t is None else t.to(device) for t in (alpha, eps, lo, hi)]
        return tuple(_lay_out(t, layout, device) for t in (x_adv, grad, x_nat)) + tuple(small)
    return build


STEP_CASES = [
    # (shape, dtype, per-sample alpha/eps, bounds, layout, opcheck, cuda_only)
    ((1, 1, 1, 1), F32, False, "none", "contiguous", True, False),
    ((7, 3, 9, 11), F32, True, "channel", "contiguous", False, False),
    ((7, 3, 9, 11), F64, True, "scalar", "transposed", True, False),
    ((4, 5, 33, 17), F32, False, "channel", "transposed", False, False),
    ((6, 13), F64, True, "channel", "contiguous", False, False),
    ((3, 2, 4, 5, 6), F32, True, "none", "contiguous", False, False),
    ((64, 5, 64, 64), F32, True, "channel", "contiguous", False, False),
    ((5, 3, 8, 8), F32, True, "channel", "contiguous", False, False),   # float4 path
    ((5, 3, 8, 8), F32, True, "channel", "offset", True, False),        # misaligned: scalar path
    ((5, 3, 8, 8), F64, True, "lo_only", "contiguous", False, False),   # double2 path
    ((5, 3, 8, 8), F64, False, "channel", "offset", False, False),
    ((3, 3, 97, 101), F32, True, "channel", "contiguous", False, False),  # several l2 chunks per sample
    ((2, 1, 513, 517), F64, True, "scalar", "contiguous", False, False),  # 130 l2 chunks
    ((300, 1, 3, 5), F32, True, "none", "contiguous", False, False),     # many small samples
    # CUDA grid caps (csrc/cuda): 1-D launches cover GRID_CAPPED threads per pass, one
    # vector of V = 16 bytes each where aligned; l2_step's grid has gridDim.y = min(B, 65535)
    # and an apply grid of at most 4096 x 256 threads per sample, with at most 512 chunks.
    ((5, 3, 2100, 2200), F32, True, "channel", "contiguous", False, True),  # 69.3M > 4 * GRID_CAPPED (float4)
    ((5, 3, 1100, 1100), F32, True, "scalar", "offset", False, True),       # 18.2M > GRID_CAPPED (scalar)
    ((4, 3, 1700, 1700), F64, True, "channel", "contiguous", False, True),  # 34.7M > 2 * GRID_CAPPED (double2)
    ((70000, 1, 3, 5), F32, True, "none", "contiguous", False, True),       # l2: B > 65535 loops gridDim.y
    ((2, 1, 2050, 2050), F32, True, "channel", "contiguous", False, True),  # l2: 4.2M/4 > 4096*256, > 512 chunks
    ((2, 1, 1030, 1030), F64, True, "none", "offset", False, True),         # l2: 1.06M > 4096*256 unvectorised
]


def _step_samples(op):
    out = []
    for shape, dtype, per_sample, bounds, layout, opcheck, cuda_only in STEP_CASES:
        name = (f"{_dname(dtype)}-{_dims(shape)}-{'alpha_per_sample' if per_sample else 'alpha_scalar'}"
                f"-bounds_{bounds}-{layout}")
        out.append(Sample(op, name, _step_builder(shape, dtype, per_sample, bounds, layout, None), dtype,
                          opcheck=opcheck, cuda_only=cuda_only))
    if op == "linf_step":  # l2's norms of subnormal gradients underflow in a float32 twin, not in the kernel
        out.append(Sample(op, "f32-4x3x5x7-alpha_per_sample-bounds_none-denormal",
                          _step_builder((4, 3, 5, 7), F32, True, "none", "contiguous", "denormal"), F32))
    return out


# ------------------------------------------------------------------ differential evolution

def de_problem(B, P, k, C, dtype, gen, H=9, W=7):
    """A DE generation on the CPU: population within bounds, its draws, the bounds, images."""
    D = k * (2 + C)
    lower = torch.tensor([0.0, 0.0] + [-1.0] * C, dtype=dtype).repeat(k)
    upper = torch.tensor([H, W] + [2.0] * C, dtype=dtype).repeat(k)
    pop = lower + torch.rand(B, P, D, generator=gen, dtype=dtype) * (upper - lower)
    draws = ops.de_draws(B, P, D, dtype=dtype, generator=gen)
    images = torch.randn(B, C, H, W, generator=gen, dtype=dtype)
    return pop, draws, lower, upper, images


def _de_trial_builder(B, P, k, C, dtype, F, CR, resample):
    def build(gen, device):
        pop, d, lower, upper, _ = de_problem(B, P, k, C, dtype, gen)
        tensors = (pop, d.donors, d.cross_u, d.cross_j, d.resample_u, lower, upper)
        return tuple(t.to(device) for t in tensors) + (F, CR, resample)
    return build


def _de_trial_samples():
    out = []
    for (B, P, k, C), cuda_only in [((5, 11, 2, 3), False), ((1, 4, 1, 1), False), ((3, 37, 5, 2), False),
                                    ((16, 4400, 50, 3), True)]:  # B*P*D = 17.6M > GRID_CAPPED genes
        for dtype in (F32, F64):
            for F, CR, resample in [(0.5, 1.0, True), (0.9, 0.3, False), (2.5, 0.7, True), (1.7, 0.5, False)]:
                if cuda_only and (F, CR) != (0.9, 0.3) and (F, CR) != (2.5, 0.7):
                    continue  # the big size once with clipping, once with resampling
                name = f"{_dname(dtype)}-B{B}-P{P}-k{k}-C{C}-F{F}-CR{CR}-{'resample' if resample else 'clip'}"
                opcheck = (B, P, dtype, F) == (5, 11, F32, 0.5)
                out.append(Sample("de_trial", name, _de_trial_builder(B, P, k, C, dtype, F, CR, resample), dtype,
                                  opcheck=opcheck, cuda_only=cuda_only))
    return out


def _de_build_builder(B, P, k, C, dtype, add, layout, H, W, edge_cases):
    def build(gen, device):
        pop, _, _, _, images = de_problem(B, P, k, C, dtype, gen, H=H, W=W)
        cand = pop.view(B, P, k, 2 + C).clone()
        if edge_cases:
            cand[0, 0, :, :2] = torch.tensor([4.2, 3.9], dtype=dtype)  # all k pixels coincide: order matters
            cand[1, 2, 0, :2] = torch.tensor([-3.0, 50.0], dtype=dtype)  # outside the image: clamped to its edge
        return _lay_out(images, layout, device), cand.to(device), add
    return build


def _de_build_samples():
    out = []
    for dtype in (F32, F64):
        for k in (1, 3, 8):
            for layout in ("contiguous", "channels_last"):
                for add in (False, True):
                    name = f"{_dname(dtype)}-B3-P6-k{k}-C3-{layout}-{'add' if add else 'replace'}"
                    opcheck = dtype == F32 and k == 1 and add and layout == "channels_last"
                    out.append(Sample("de_build", name, _de_build_builder(3, 6, k, 3, dtype, add, layout, 9, 7, True),
                                      dtype, opcheck=opcheck))
    out.append(Sample("de_build", "f32-B2-P5-k2-C3-6x6-transposed-replace",
                      _de_build_builder(2, 5, 2, 3, F32, False, "transposed", 6, 6, False), F32, opcheck=True))
    # B*P*C*H*W = 18.7M output elements > GRID_CAPPED
    out.append(Sample("de_build", "f32-B4-P300-k3-C3-72x72-contiguous-add",
                      _de_build_builder(4, 300, 3, 3, F32, True, "contiguous", 72, 72, True), F32, cuda_only=True))
    return out


def _de_select_builder(B, P, D, dtype, trial_layout):
    def build(gen, device):
        pop = torch.randn(B, P, D, generator=gen, dtype=dtype)
        trial = pop.flip(1) + 0.5
        fit = torch.rand(B, P, generator=gen, dtype=dtype)
        tfit = torch.rand(B, P, generator=gen, dtype=dtype)
        tfit[0, 0] = fit[0, 0]  # a tie goes to the trial
        tfit[-1, 1] = float("nan")  # a NaN trial fitness never wins
        if trial_layout == "strided":  # a (P, B, D) buffer seen as (B, P, D): not contiguous
            trial_t = trial.transpose(0, 1).contiguous().to(device).transpose(0, 1)
        else:
            trial_t = trial.to(device)
        return pop.to(device), fit.to(device), trial_t, tfit.to(device)
    return build


def _de_select_samples():
    out = []
    for (B, P, D), cuda_only in [((4, 9, 5), False), ((4, 9, 10), False),
                                 ((2, 8_500_000, 2), True)]:  # 17M candidates > GRID_CAPPED (fitness kernel)
        for dtype in (F32, F64):
            for layout in ("contiguous", "strided"):
                if cuda_only and (dtype, layout) != (F32, "contiguous"):
                    continue
                name = f"{_dname(dtype)}-B{B}-P{P}-D{D}-trial_{layout}"
                opcheck = (D, dtype, layout) == (5, F32, "contiguous")
                out.append(Sample("de_select_", name, _de_select_builder(B, P, D, dtype, layout), dtype,
                                  opcheck=opcheck, cuda_only=cuda_only))
    return out


# ------------------------------------------------------------------ MMD

MMD_OPS = ("mk_mmd", "_mk_mmd_with_grad")


def mmd_sigmas(x, y):
    """The kernel widths the MMD cases use: DAN's ladder of the data, two fixed ones for two points."""
    return ops.dan_sigmas(x, y) if x.shape[0] + y.shape[0] > 2 else [1.0, 3.0]


def _mmd_builder(n, m, d, unbiased, dtype, layout):
    def build(gen, device):
        x = torch.randn(n, d, generator=gen, dtype=dtype)
        y = torch.randn(m, d, generator=gen, dtype=dtype) * 1.3 + 0.4
        return _lay_out(x, layout, device), _lay_out(y, layout, device), mmd_sigmas(x, y), unbiased
    return build


MMD_CASES = [
    # (n, m, d, unbiased, layout, cuda_only); 5500 rows span several tiles and column chunks
    (1, 1, 3, False, "contiguous", False),
    (2, 3, 1, True, "contiguous", False),
    (17, 29, 5, False, "contiguous", False),
    (17, 29, 5, True, "contiguous", False),
    (17, 29, 5, True, "transposed", False),
    (64, 40, 33, True, "contiguous", False),
    (3000, 2500, 4, False, "contiguous", True),
    (3000, 2500, 4, True, "contiguous", True),
]


def _mmd_samples(op):
    out = []
    for n, m, d, unbiased, layout, cuda_only in MMD_CASES:
        for dtype in (F32, F64):
            name = f"{_dname(dtype)}-n{n}-m{m}-d{d}-{'unbiased' if unbiased else 'biased'}-{layout}"
            opcheck = dtype == F64 and (n, m) == (17, 29) and layout == "contiguous" \
                and unbiased == (op == "mk_mmd")
            out.append(Sample(op, name, _mmd_builder(n, m, d, unbiased, dtype, layout), dtype,
                              opcheck=opcheck, cuda_only=cuda_only))
    return out


# ------------------------------------------------------------------ the registry

_REGISTRY = {
    "linf_step": _step_samples("linf_step"),
    "l2_step": _step_samples("l2_step"),
    "de_trial": _de_trial_samples(),
    "de_build": _de_build_samples(),
    "de_select_": _de_select_samples(),
    "mk_mmd": _mmd_samples("mk_mmd"),
    "_mk_mmd_with_grad": _mmd_samples("_mk_mmd_with_grad"),
}
OPS_COVERED = tuple(_REGISTRY)


def samples(op: str, *, cuda_only: Optional[bool] = None, opcheck: Optional[bool] = None) -> list:
    """The samples of ``op``; ``cuda_only``/``opcheck`` keep only those with that flag value."""
    return [s for s in _REGISTRY[op]
            if (cuda_only is None or s.cuda_only == cuda_only) and (opcheck is None or s.opcheck == opcheck)]


def sample(op: str, id: str) -> Sample:
    """The sample of ``op`` named ``id`` (its id without the op's name)."""
    found = [s for s in _REGISTRY[op] if s.id == id]
    if not found:
        raise KeyError(f"no {op} sample {id!r}; known: {[s.id for s in _REGISTRY[op]]}")
    return found[0]


def params(op: str, **flags) -> list:
    """``samples(op, **flags)`` as ``pytest.param``s with readable ids."""
    return [s.param() for s in samples(op, **flags)]


def all_params(**flags) -> list:
    """Every op's samples (filtered as :func:`samples`) as ``pytest.param``s."""
    return [p for op in OPS_COVERED for p in params(op, **flags)]


# ------------------------------------------------------------------ op == twin

@dataclass(frozen=True)
class Tol:
    """How close one output must be to its twin's: ``rtol`` and ``atol`` (both 0: bit for bit);
    ``scaled``: ``atol`` is relative to the largest magnitude among the op's scaled outputs
    (gradients are sums of signed terms: compared against their scale, not element by element)."""
    rtol: float = 0.0
    atol: float = 0.0
    scaled: bool = False


EXACT = Tol()
_MMD_VALUE = {F32: Tol(1e-4, 1e-6), F64: Tol(1e-10, 1e-12)}
_MMD_GRAD = {F32: Tol(1e-4, 1e-4, scaled=True), F64: Tol(1e-9, 1e-9, scaled=True)}

#: op -> dtype -> one Tol per output (an in-place op: per argument it updates).
TOLERANCES = {
    "linf_step": {F32: (EXACT,), F64: (EXACT,)},  # sign * alpha is exact: the fused pass is bit-identical
    "l2_step": {F32: (Tol(2e-5, 2e-6),), F64: (Tol(1e-12, 1e-12),)},
    "de_trial": {F32: (EXACT,), F64: (EXACT,)},
    "de_build": {F32: (EXACT,), F64: (EXACT,)},
    "de_select_": {F32: (EXACT, EXACT), F64: (EXACT, EXACT)},
    "mk_mmd": {d: (_MMD_VALUE[d],) for d in (F32, F64)},
    "_mk_mmd_with_grad": {d: (_MMD_VALUE[d], _MMD_GRAD[d], _MMD_GRAD[d]) for d in (F32, F64)},
}


def call(op: str, args: tuple) -> tuple:
    """``torch.ops.advrobust.<op>(*args)``'s outputs as a tuple; for an op that updates
    arguments in place (``Tensor(a!)`` in its schema), those arguments after the call."""
    overload = getattr(torch.ops.advrobust, op).default
    out = overload(*args)
    written = tuple(a for a, s in zip(args, overload._schema.arguments)
                    if s.alias_info is not None and s.alias_info.is_write)
    if written:
        return written
    return out if isinstance(out, tuple) else (out,)


def assert_matches_reference(sample: Sample, got: tuple, want) -> None:
    """``got`` (from :func:`call`) against the twin's result ``want``, within ``TOLERANCES``."""
    want = want if isinstance(want, tuple) else (want,)
    tols = TOLERANCES[sample.op][sample.dtype]
    assert len(got) == len(want) == len(tols)
    scale = max([w.abs().max().item() for w, t in zip(want, tols) if t.scaled] + [1e-30])
    for g, w, t in zip(got, want, tols):
        assert g.shape == w.shape and g.dtype == w.dtype and g.device == w.device
        if t == EXACT:
            assert torch.equal(g, w)
        else:
            torch.testing.assert_close(g, w, rtol=t.rtol, atol=t.atol * (scale if t.scaled else 1.0))
