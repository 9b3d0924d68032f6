"""Incremental scoring of one-pixel candidates (advrobust.attacks.incremental) and its use in OnePixel:
outputs equal the full forward pass of the built candidate images, the attack finds the same pixels."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from advrobust.attacks import OnePixel
from advrobust.checks import clamp_range
from advrobust.attacks.incremental import IncrementalScorer, Unsupported
from advrobust.models import create
from advrobust.ops import de_build

# (name, constructor arguments, image shape, takes ebv): small widths, odd sizes where the model allows
MODELS = [
    ("convnet", dict(image_size=37), (3, 37, 37), False),
    ("morphology_small", dict(image_size=45), (3, 45, 45), False),
    ("photoz_small", dict(image_size=33), (5, 33, 33), True),
    ("campagne_cnn", dict(image_size=33, channels=(8, 12, 16), fc_width=32), (5, 33, 33), True),
    ("resnet18", dict(widths=(8, 8, 16, 16), latent_dim=16), (3, 35, 35), False),
    ("pasquet_inception", dict(image_size=40, conv0_channels=8, cells=[(4, 6, 5, 7)] * 4 + [(4, 6, 0, 7)],
                               fc_widths=(16, 16)), (5, 40, 40), True),
]


def _randomise_batch_norm(model: nn.Module) -> None:
    """Eval-mode batch norm with statistics and affine parameters away from the identity."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)


def _candidates(shape, n_images: int, P: int, k: int, dtype, seed: int = 0) -> torch.Tensor:
    """(n, P, k, 2 + C) genes; the first candidates of image 0 put all their pixels at the four corners,
    an edge middle and the centre, the rest are random (values in [0, 1))."""
    C, H, W = shape
    g = torch.Generator().manual_seed(seed)
    cand = torch.rand((n_images, P, k, 2 + C), generator=g, dtype=dtype)
    cand[..., 0] *= H
    cand[..., 1] *= W
    fixed = [(0, 0), (0, W - 0.5), (H - 0.5, 0), (H - 0.5, W - 0.5), (H // 2, 0), (H // 2, W // 2)]
    for p, (r, c) in enumerate(fixed):
        cand[0, p, 0, 0], cand[0, p, 0, 1] = r, c  # the first pixel; with k = 3 the others stay random
    return cand


def _close(got: torch.Tensor, want: torch.Tensor, dtype) -> None:
    scale = float(want.abs().max())
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("name,kwargs,shape,ebv", MODELS, ids=[m[0] for m in MODELS])
@pytest.mark.parametrize("k,dtype", [(1, torch.float32), (3, torch.float32), (3, torch.float64)])
def test_scores_equal_full_forward(name, kwargs, shape, ebv, k, dtype):
    torch.manual_seed(0)
    model = create(name, **kwargs).eval().to(dtype)
    _randomise_batch_norm(model)
    x = torch.rand((2,) + shape, dtype=dtype) * 0.1
    extra = (torch.rand(2, dtype=dtype) * 0.2,) if ebv else ()
    P = 8
    cand = _candidates(shape, 2, P, k, dtype)
    scorer = IncrementalScorer(model, x, extra, chunk=5)  # chunks that split an image's population
    got = scorer.score(torch.tensor([1, 0]), cand.flip(0))
    with torch.no_grad():
        want = model(de_build(x.flip(0), cand.flip(0)).flatten(0, 1), *(e.flip(0).repeat_interleave(P) for e in extra))
    _close(got, want, dtype)
    assert scorer.bytes_per_image > 0
    assert 0 < scorer.cost_ratio < (0.5 if k == 1 and name in ("convnet", "morphology_small", "photoz_small") else 2)


class _Layers(nn.Module):
    """Geometry the models do not cover: stride, dilation, groups, pool padding and ceil mode, average
    pooling without padded cells or with a divisor, zero padding, PReLU, leaky ReLU, per-channel affine."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, stride=2, padding=2, dilation=2)
        self.b = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.c = nn.Conv2d(6, 6, 3, padding=1, groups=3)
        self.d = nn.PReLU(6)
        self.e = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        self.f = nn.ZeroPad2d((1, 0, 2, 1))
        self.g = nn.AvgPool2d(2, stride=1, divisor_override=3)
        self.scale = nn.Parameter(torch.rand(1, 6, 1, 1) + 0.5)
        self.head = nn.LazyLinear(4)

    def forward(self, x):
        h = self.d(self.c(self.b(self.a(x))))
        h = nn.functional.leaky_relu(self.g(self.f(self.e(h))) * self.scale - 0.1, 0.2)
        return self.head(h.flatten(1))


@pytest.mark.parametrize("k", [1, 3])
def test_layer_geometry_float64(k):
    torch.manual_seed(0)
    shape = (3, 23, 19)
    model = _Layers().double()
    x = torch.rand((2,) + shape, dtype=torch.float64)
    model(x)  # materialise the lazy layer
    model.eval()
    cand = _candidates(shape, 2, 10, k, torch.float64, seed=3)
    got = IncrementalScorer(model, x).score(torch.arange(2), cand)
    with torch.no_grad():
        want = model(de_build(x, cand).flatten(0, 1))
    _close(got, want, torch.float64)


def test_add_mode_clamp_and_repeated_pixels():
    """add=True with a lo/hi clamp, and k pixels of which two coincide (applied in order, as de_build)."""
    model = create("morphology_small", image_size=21).eval().double()
    x = torch.rand(2, 3, 21, 21, dtype=torch.float64)
    cand = _candidates((3, 21, 21), 2, 6, 3, torch.float64, seed=5)
    cand[..., 2:] = cand[..., 2:] * 2 - 1
    cand[:, :, 2, :2] = cand[:, :, 0, :2]  # pixel 2 repeats pixel 0
    lo, hi = torch.tensor([0.1, 0.0, 0.2], dtype=torch.float64), 0.9
    got = IncrementalScorer(model, x).score(torch.arange(2), cand, add=True, lo=lo, hi=hi)
    imgs = de_build(x, cand, add=True).flatten(0, 1)
    changed = clamp_range(imgs, lo, hi)
    diff = (imgs != x.repeat_interleave(6, 0)).any(dim=1, keepdim=True)
    with torch.no_grad():
        want = model(torch.where(diff, changed, imgs))
    _close(got, want, torch.float64)


def test_onepixel_same_search_with_and_without():
    torch.manual_seed(0)
    model = create("morphology_small", image_size=33).eval().double()
    x = torch.rand(4, 3, 33, 33, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0])
    runs = [OnePixel(model, pixels=k, population=16, max_iter=6, seed=2, incremental=inc).run(x, y)
            for k in (1, 3) for inc in (False, True)]
    for full, inc in (runs[:2], runs[2:]):
        assert torch.equal(full.iterations, inc.iterations)
        assert torch.equal(full.pixels, inc.pixels)
        assert torch.equal(full.success, inc.success)
        torch.testing.assert_close(full.fitness, inc.fitness, rtol=1e-12, atol=1e-12)


def test_photoz_onepixel_with_ebv_matches():
    torch.manual_seed(0)
    model = create("photoz_small", image_size=24).eval().double()
    x = torch.rand(3, 5, 24, 24, dtype=torch.float64) * 0.05
    z, ebv = torch.rand(3, dtype=torch.float64) * 0.5, torch.rand(3, dtype=torch.float64) * 0.1
    full, inc = (OnePixel(model, population=12, max_iter=4, seed=1, objective="photoz", incremental=flag)
                 .run(x, z, ebv) for flag in (False, True))
    assert torch.equal(full.pixels, inc.pixels) and torch.equal(full.iterations, inc.iterations)
    torch.testing.assert_close(full.fitness, inc.fitness, rtol=1e-12, atol=1e-12)


class _Upsampler(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.up = nn.Upsample(scale_factor=2)
        self.fc = nn.Linear(2 * 12 * 12, 3)

    def forward(self, x):
        return self.fc(self.up(self.conv(x)).flatten(1))


def test_unsupported_layer_falls_back_and_says_so_once():
    torch.manual_seed(0)
    model = _Upsampler().eval()
    x, y = torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
    atk = OnePixel(model, population=8, max_iter=2, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = atk.run(x, y)
        atk.run(x, y)
    messages = [str(w.message) for w in caught if "incrementally" in str(w.message)]
    assert len(messages) == 1 and "module 'up' (Upsample)" in messages[0]
    ref = OnePixel(model, population=8, max_iter=2, seed=0, incremental=False).run(x, y)
    assert torch.equal(res.pixels, ref.pixels) and torch.equal(res.fitness, ref.fitness)
    with pytest.raises(ValueError, match="upsample"):
        OnePixel(model, population=8, max_iter=2, seed=0, incremental=True).run(x, y)


def test_training_mode_and_bad_argument():
    model = create("morphology_small", image_size=21)  # training mode: batch statistics
    with pytest.raises(Unsupported, match="training"):
        IncrementalScorer(model, torch.rand(2, 3, 21, 21))
    with pytest.raises(ValueError, match="incremental"):
        OnePixel(model, incremental="yes")


def test_auto_declines_large_cones_and_says_so():
    """ResNet18's cones cover most of its maps after a few blocks: "auto" scores by full forwards."""
    torch.manual_seed(0)
    model = create("resnet18", widths=(4, 4, 8, 8), latent_dim=8).eval()
    x, y = torch.rand(1, 3, 33, 33), torch.tensor([0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        OnePixel(model, population=4, max_iter=1, seed=0).run(x, y)
    assert any("multiply-adds" in str(w.message) for w in caught)
