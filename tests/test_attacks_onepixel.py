"""The one-pixel attack (batched differential evolution): planted pixels, reproducibility, targets,
add mode, early stop, custom objectives and the photo-z path. Small models only."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from advrobust.attacks import one_pixel, OnePixel, OnePixelResult, PhotozObjective

from attack_helpers import _restore_rng, small_cnn, TinyPhotoz, data  # noqa: F401 (fixtures)


def test_photoz_one_pixel():
    model = TinyPhotoz().eval()
    x = torch.randn(3, 5, 8, 8)
    ebv, z = torch.rand(3) * 0.1, torch.rand(3) * 0.9
    res = OnePixel(model, population=16, max_iter=3, objective="photoz", threshold=0.5, seed=0).run(x, z, ebv)
    assert isinstance(res, OnePixelResult) and res.x_adv.shape == x.shape and res.fitness.shape == (3,)
    with torch.no_grad():
        zp = torch.softmax(model(res.x_adv, ebv), 1) @ model.bin_centres
    dz = (zp - z).abs() / (1 + z)
    torch.testing.assert_close(-dz, res.fitness)
    assert torch.equal(res.success, dz > 0.5)


def test_photoz_one_pixel_targeted_pulls_toward_the_target_redshift():
    model = TinyPhotoz().eval()
    x, ebv = torch.randn(4, 5, 8, 8), torch.rand(4) * 0.1
    target = torch.full((4,), 0.9)
    objective = PhotozObjective(targeted=True, threshold=1e-9)  # no success: runs to the cap
    res = OnePixel(model, population=24, max_iter=6, objective=objective, seed=0).run(x, target, ebv)
    with torch.no_grad():
        zphot = lambda xx: torch.softmax(model(xx, ebv), 1) @ model.bin_centres  # noqa: E731
        before, after = (zphot(x) - target).abs(), (zphot(res.x_adv) - target).abs()
    assert torch.all(after <= before + 1e-6) and after.mean() < before.mean()
    torch.testing.assert_close(res.fitness, after / (1 + target))


class ThresholdPixel(nn.Module):
    """Planted vulnerability: class 1 as soon as any pixel of channel 0 exceeds 0.9, else class 0."""

    def forward(self, x):
        s = 40.0 * (x[:, 0].flatten(1).amax(1) - 0.9)
        return torch.stack([torch.zeros_like(s), s, torch.full_like(s, -5.0)], 1)


class PlantedPixel(nn.Module):
    """Only a bright value at pixel (row 11, col 4) of channel 0 flips the class; the score is a smooth
    Gaussian bump around it so DE can climb."""

    def __init__(self, H=16, W=16, r=11, c=4):
        super().__init__()
        rr, cc = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        self.register_buffer("w", torch.exp(-((rr - r) ** 2 + (cc - c) ** 2) / 18.0))

    def forward(self, x):
        s = 40.0 * ((x[:, 0] * self.w).flatten(1).amax(1) - 0.97)
        return torch.stack([torch.zeros_like(s), s], 1)


def test_one_pixel_flips_planted_model_and_changes_at_most_k_pixels():
    x = torch.rand(5, 3, 10, 10) * 0.5
    y = torch.zeros(5, dtype=torch.long)
    for k in (1, 3):
        res = OnePixel(ThresholdPixel(), pixels=k, population=30, max_iter=20, lo=0.0, hi=1.0, seed=1).run(x, y)
        assert res.success.all()
        assert (ThresholdPixel()(res.x_adv).argmax(1) == 1).all()
        changed = (res.x_adv != x).any(1).flatten(1).sum(1)
        assert torch.all(changed <= k) and torch.all(changed >= 1)
        assert res.pixels.shape == (5, k, 2) and res.values.shape == (5, k, 3) and res.iterations.dtype == torch.int64
        assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
        # the recorded pixels/values are the ones applied
        b = torch.arange(5)
        torch.testing.assert_close(res.x_adv[b, :, res.pixels[:, -1, 0], res.pixels[:, -1, 1]], res.values[:, -1])


@pytest.mark.parametrize("strategy,F", [("best1", (0.5, 1.0)), ("rand1", 0.5)])
def test_one_pixel_finds_planted_best_pixel(strategy, F):
    torch.manual_seed(0)
    x = torch.rand(4, 2, 16, 16) * 0.1
    y = torch.zeros(4, dtype=torch.long)
    res = OnePixel(PlantedPixel(), population=40, max_iter=60, strategy=strategy, F=F, lo=0.0, hi=1.0, seed=0).run(x, y)
    assert res.success.all(), res.iterations
    assert torch.all(res.pixels[:, 0] == torch.tensor([11, 4]))
    assert torch.all(res.values[:, 0, 0] > 0.97)
    assert torch.all(res.iterations > 0) and torch.all(res.iterations < 60)


def test_one_pixel_reproducible_and_chunked():
    model = small_cnn().eval()
    x, y = data(B=4)
    kw = dict(pixels=2, population=12, max_iter=4, seed=7)
    a = OnePixel(model, **kw).run(x, y)
    torch.testing.assert_close(one_pixel(model, x, y, **kw), a.x_adv)
    # a memory budget of 5 images per chunk splits the population: same result
    c = OnePixel(model, memory_budget=5 * x[0].numel() * 4, **kw).run(x, y)
    torch.testing.assert_close(a.x_adv, c.x_adv)
    assert torch.equal(a.iterations, c.iterations) and torch.equal(a.success, c.success)
    assert torch.equal(a.pixels, c.pixels)


def test_one_pixel_targeted_and_unsuccessful():
    x = torch.rand(3, 3, 10, 10) * 0.5
    # targeted toward class 1 of the threshold model: success
    res = OnePixel(ThresholdPixel(), population=30, max_iter=20, targeted=True, lo=0.0, hi=1.0, seed=2).run(
        x, torch.ones(3, dtype=torch.long))
    assert res.success.all()
    # class 2 is unreachable: the search runs to the cap and reports failure
    res = OnePixel(ThresholdPixel(), population=8, max_iter=3, targeted=True, lo=0.0, hi=1.0, seed=2).run(
        x, torch.full((3,), 2, dtype=torch.long))
    assert not res.success.any() and torch.all(res.iterations == 3)
    changed = (res.x_adv != x).any(1).flatten(1).sum(1)
    assert torch.all(changed <= 1)


def test_one_pixel_add_mode():
    x = torch.rand(2, 3, 10, 10) * 0.5
    res = OnePixel(ThresholdPixel(), population=20, max_iter=10, add=True, add_range=1.0, seed=0).run(
        x, torch.zeros(2, dtype=torch.long))
    d = res.x_adv - x
    assert res.success.all() and ((d != 0).any(1).flatten(1).sum(1) <= 1).all() and d.abs().max() <= 1.0


def test_one_pixel_add_mode_respects_valid_range_and_records_applied_change():
    x = torch.rand(4, 3, 10, 10) * 0.5 + 0.5
    res = OnePixel(ThresholdPixel(), population=20, max_iter=5, add=True, add_range=5.0, lo=0.0, hi=1.0,
                   seed=0).run(x, torch.zeros(4, dtype=torch.long))
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    b = torch.arange(4)
    applied = (res.x_adv - x)[b, :, res.pixels[:, 0, 0], res.pixels[:, 0, 1]]
    torch.testing.assert_close(res.values[:, 0], applied)
    # pixels already outside [lo, hi] (e.g. negative sky) stay as they are: only the k pixels change
    x = torch.rand(4, 3, 10, 10) * 3.0 - 1.0
    never = lambda out, yy: (out[:, 1], torch.zeros(out.shape[0], dtype=torch.bool))  # noqa: E731
    res = OnePixel(ThresholdPixel(), pixels=2, population=8, max_iter=2, add=True, add_range=0.1, lo=0.0, hi=1.0,
                   objective=never, seed=0).run(x, torch.zeros(4, dtype=torch.long))
    assert ((res.x_adv != x).any(1).flatten(1).sum(1) <= 2).all()


def test_one_pixel_early_stop_drops_finished_images_from_the_forward():
    """Image 0 is fooled by any candidate, image 1 never: after the initial population only image 1 is scored."""
    x = torch.zeros(2, 1, 4, 4)
    x[0, 0, 0, 0] = 2.0  # ThresholdPixel-like: image 0 is already "class 1" whatever the candidate
    sizes = []

    def objective(out, yy):
        sizes.append(out.shape[0])
        fooled = out[:, 0] > 1.5
        return -out[:, 0], fooled

    model = nn.Sequential(nn.Flatten(), nn.Identity())
    model.forward = lambda t: t.flatten(1).amax(1, keepdim=True)  # noqa: E731  (max pixel value)
    res = OnePixel(model, population=8, max_iter=3, objective=objective, lo=0.0, hi=1.0, seed=0).run(
        x, torch.zeros(2, dtype=torch.long))
    assert sizes == [16, 8, 8, 8]
    assert res.success.tolist() == [True, False] and res.iterations.tolist() == [0, 3]


def test_one_pixel_custom_objective_one_forward_per_generation():
    model = small_cnn().eval()
    x, y = data(B=3)
    calls = []

    def never(out, yy):
        calls.append(out.shape[0])
        return out[:, 0], torch.zeros(out.shape[0], dtype=torch.bool)

    res = OnePixel(model, population=10, max_iter=4, objective=never, seed=0).run(x, y)
    assert calls == [30] * 5 and not res.success.any()  # initial population + 4 generations, batched
