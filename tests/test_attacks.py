"""Tests of advrobust.attacks: gradient attacks against plain PyTorch, bounds, one-pixel DE, photo-z path,
natural noise, the attack contract (a tensor from __call__, an AttackResult from .run) and input checks.
Small models only; nothing here takes long."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advrobust import redshift
from advrobust.attacks import (
    FGSM, PGD, PGDL2, AttackResult, OnePixel, OnePixelResult, PhotozObjective, eps_l2_equal_volume, fgsm,
    gaussian_noise, PhotozDeltaZ, ShorterExposure, one_pixel, pgd, pgd_l2, shorter_exposure, uniform_noise,
    GaussianNoise, UniformNoise, lsst_shorter_exposure,
)


@pytest.fixture(autouse=True)
def _restore_rng():
    state = torch.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.set_rng_state(state)


# ----------------------------------------------------------------------------- small models
def small_cnn(C=3, H=8, W=8, n_classes=3, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(C, 6, 3, padding=1), nn.BatchNorm2d(6), nn.Tanh(), nn.Flatten(), nn.Dropout(0.2),
        nn.Linear(6 * H * W, n_classes),
    ).to(dtype)


class TinyPhotoz(nn.Module):
    """(image, ebv) -> logits over 20 redshift bins on [0, 1], with bin_centres and bin_edges buffers."""

    def __init__(self, C=5, H=8, W=8, n_bins=20):
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv2d(C, 4, 3, padding=1)
        self.fc = nn.Linear(4 * H * W + 1, n_bins)
        self.register_buffer("bin_centres", redshift.bin_centres(n_bins, 1.0).float())
        self.register_buffer("bin_edges", redshift.bin_edges(n_bins, 1.0))
        self.seen_ebv = None

    def forward(self, image, ebv):
        self.seen_ebv = ebv
        h = torch.tanh(self.conv(image)).flatten(1)
        return self.fc(torch.cat([h, ebv.view(-1, 1).to(h.dtype)], 1))


@pytest.fixture(scope="module")
def trained_mlp():
    """A two-layer classifier trained for ~1 s on three Gaussian blobs in 3x6x6 images."""
    g = torch.Generator().manual_seed(3)
    centres = torch.randn(3, 3 * 6 * 6, generator=g)
    y = torch.randint(0, 3, (600,), generator=g)
    x = (centres[y] + 0.8 * torch.randn(600, 108, generator=g)).view(600, 3, 6, 6)
    torch.manual_seed(4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(108, 32), nn.ReLU(), nn.Linear(32, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), x[:64], y[:64]


# ------------------------------------------------------------------------- plain PyTorch oracles
def plain_pgd(model, x, y, eps, alpha, steps):
    xa = x.clone()
    for _ in range(steps):
        xa.requires_grad_(True)
        loss = F.cross_entropy(model(xa), y)
        (g,) = torch.autograd.grad(loss, xa)
        xa = torch.min(torch.max(xa.detach() + alpha * g.sign(), x - eps), x + eps)
    return xa


def plain_pgd_l2(model, x, y, eps, alpha, steps):
    xa = x.clone()
    for _ in range(steps):
        xa.requires_grad_(True)
        loss = F.cross_entropy(model(xa), y)
        (g,) = torch.autograd.grad(loss, xa)
        gn = g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        d = xa.detach() - x + alpha * g / gn
        dn = d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        xa = x + eps * d / torch.clamp(dn, min=eps)
    return xa


def data(B=6, C=3, H=8, W=8, dtype=torch.float32):
    return torch.randn(B, C, H, W, dtype=dtype), torch.randint(0, 3, (B,))


# ---------------------------------------------------------------------------- gradient attacks
def test_fgsm_equals_plain_pytorch():
    model = small_cnn(dtype=torch.float64).eval()
    x, y = data(dtype=torch.float64)
    expected = plain_pgd(model, x, y, eps=0.03, alpha=0.03, steps=1)
    torch.testing.assert_close(FGSM(model, eps=0.03)(x, y), expected)
    torch.testing.assert_close(fgsm(model, x, y, eps=0.03), expected)


def test_pgd_equals_plain_pytorch():
    model = small_cnn(dtype=torch.float64).eval()
    x, y = data(dtype=torch.float64)
    expected = plain_pgd(model, x, y, eps=0.05, alpha=0.005, steps=7)
    torch.testing.assert_close(PGD(model, eps=0.05, steps=7)(x, y), expected)  # alpha default eps/10
    torch.testing.assert_close(pgd(model, x, y, eps=0.05, alpha=0.005, steps=7), expected)


def test_pgd_l2_equals_plain_pytorch():
    model = small_cnn(dtype=torch.float64).eval()
    x, y = data(dtype=torch.float64)
    expected = plain_pgd_l2(model, x, y, eps=0.3, alpha=0.1, steps=6)
    torch.testing.assert_close(PGDL2(model, eps=0.3, alpha=0.1, steps=6)(x, y), expected)
    torch.testing.assert_close(pgd_l2(model, x, y, eps=0.3, alpha=0.1, steps=6), expected)


def test_eps_l2_equal_volume():
    assert eps_l2_equal_volume(0.01, 64 * 64) == pytest.approx(0.01 * math.sqrt(2 * 4096 / (math.e * math.pi)))
    assert eps_l2_equal_volume(0.0, 10) == 0.0
    with pytest.raises(ValueError):
        eps_l2_equal_volume(-1.0, 10)


@pytest.mark.parametrize("random_start", [False, True])
def test_linf_bounds_per_sample_eps_and_range(random_start):
    model = small_cnn()
    x, y = data(B=5)
    x = x.clamp(-0.5, 0.5)  # inside [lo, hi], so the clamp never pushes beyond eps
    eps = torch.tensor([0.0, 0.01, 0.1, 0.5, 1.0])
    lo, hi = torch.tensor([-1.0, -0.5, -2.0]), torch.tensor([1.0, 0.5, 2.0])
    for atk in (PGD(model, eps=eps, steps=5, random_start=random_start, lo=lo, hi=hi), FGSM(model, eps=eps)):
        xa = atk(x, y)
        d = (xa - x).abs().flatten(1).amax(1)
        assert torch.all(d <= eps + 1e-6)
    xa = PGD(model, eps=eps, steps=5, random_start=random_start, lo=lo, hi=hi)(x, y)
    assert torch.all(xa >= lo.view(1, 3, 1, 1) - 1e-7) and torch.all(xa <= hi.view(1, 3, 1, 1) + 1e-7)
    xa = PGD(model, eps=0.3, steps=3, random_start=random_start, lo=-0.2, hi=0.2)(x.clamp(-0.2, 0.2), y)
    assert xa.min() >= -0.2 and xa.max() <= 0.2


@pytest.mark.parametrize("random_start", [False, True])
def test_l2_bounds_per_sample_eps(random_start):
    model = small_cnn()
    x, y = data(B=4)
    eps = torch.tensor([0.0, 0.1, 1.0, 3.0])
    xa = PGDL2(model, eps=eps, steps=5, random_start=random_start)(x, y)
    norms = (xa - x).flatten(1).norm(dim=1)
    assert torch.all(norms <= eps * (1 + 1e-5) + 1e-6)
    if random_start:  # a uniform start in a 192-d ball lies near its surface
        xa0 = PGDL2(model, eps=eps, steps=0, random_start=True)(x, y)
        n0 = (xa0 - x).flatten(1).norm(dim=1)
        assert torch.all(n0 <= eps * (1 + 1e-5)) and torch.all(n0[1:] > 0.9 * eps[1:])
    xa = PGDL2(model, eps=1.0, steps=4, random_start=random_start, lo=-0.5, hi=0.5)(x.clamp(-0.5, 0.5), y)
    assert xa.min() >= -0.5 and xa.max() <= 0.5


def test_random_start_reproducible_with_generator():
    model = small_cnn()
    x, y = data()
    a = PGD(model, eps=0.1, steps=2, random_start=True, generator=torch.Generator().manual_seed(5))(x, y)
    b = PGD(model, eps=0.1, steps=2, random_start=True, generator=torch.Generator().manual_seed(5))(x, y)
    torch.testing.assert_close(a, b)


def test_pgd_beats_fgsm_on_trained_model(trained_mlp):
    model, x, y = trained_mlp
    eps = 0.5

    def loss(xa):
        with torch.no_grad():
            return F.cross_entropy(model(xa), y).item()

    l_clean, l_fgsm, l_pgd = loss(x), loss(FGSM(model, eps=eps)(x, y)), loss(PGD(model, eps=eps, steps=10)(x, y))
    assert l_clean < l_fgsm <= l_pgd + 1e-6


def test_targeted_pgd_moves_toward_target(trained_mlp):
    model, x, y = trained_mlp
    target = (y + 1) % 3
    xa = PGD(model, eps=1.0, alpha=0.25, steps=10, targeted=True)(x, target)
    with torch.no_grad():
        assert (model(xa).argmax(1) == target).float().mean() > (model(x).argmax(1) == target).float().mean()


def test_inputs_untouched_mode_restored_no_param_grads():
    model = small_cnn()
    model.train()
    model[1].eval()  # a sub-module in its own mode must keep it
    x, y = data()
    x0, y0 = x.clone(), y.clone()
    seen = []
    model[4].register_forward_hook(lambda m, i, o: seen.append(m.training))
    PGD(model, eps=0.1, steps=2, random_start=True)(x, y)
    PGDL2(model, eps=0.5, steps=2, random_start=True)(x, y)
    OnePixel(model, population=8, max_iter=2, seed=0)(x, y)
    assert not any(seen)  # dropout ran in eval mode
    assert model.training and not model[1].training and model[4].training
    assert torch.equal(x, x0) and torch.equal(y, y0) and not x.requires_grad
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


def test_user_loss_hook():
    model = small_cnn().eval()
    x, y = data()
    calls = []

    def margin(out, yy):
        calls.append(out.shape)
        return out.gather(1, yy.view(-1, 1)).squeeze(1).neg()

    xa = PGD(model, eps=0.1, steps=3, loss=margin)(x, y)
    assert len(calls) == 3 and calls[0] == (6, 3) and (xa - x).abs().max() <= 0.1 + 1e-6


# ------------------------------------------------------------------------------------ photo-z
def test_photoz_gradient_paths_end_to_end():
    model = TinyPhotoz().eval()
    x = torch.randn(6, 5, 8, 8)
    ebv = torch.rand(6) * 0.1
    ebv0 = ebv.clone()
    z = torch.rand(6) * 0.9
    zphot = lambda xx: torch.softmax(model(xx, ebv), 1) @ model.bin_centres  # noqa: E731
    with torch.no_grad():
        dz0 = ((zphot(x) - z).abs() / (1 + z)).mean()
    for loss in ("photoz_ce", "photoz_dz"):
        xa = PGD(model, eps=0.2, steps=5, loss=loss)(x, z, ebv)
        assert xa.shape == x.shape and (xa - x).abs().max() <= 0.2 + 1e-6
        assert torch.equal(model.seen_ebv, ebv) and torch.equal(ebv, ebv0)
    with torch.no_grad():
        dz_adv = ((zphot(PGD(model, eps=0.3, steps=10, loss="photoz_dz")(x, z, ebv)) - z).abs() / (1 + z)).mean()
    assert dz_adv > dz0
    # targeted: pull z_phot toward 0.95
    target = torch.full((6,), 0.95)
    xt = PGD(model, eps=0.5, steps=10, loss="photoz_dz", targeted=True)(x, target, ebv)
    with torch.no_grad():
        assert (zphot(xt) - target).abs().mean() < (zphot(x) - target).abs().mean()
    # integer bins are accepted by the bin cross-entropy too
    PGDL2(model, eps=1.0, steps=2, loss="photoz_ce")(x, torch.randint(0, 20, (6,)), ebv)


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


def test_photoz_loss_needs_bin_centres():
    with pytest.raises(ValueError, match="bin_centres"):
        PGD(small_cnn(), loss="photoz_dz")


# ----------------------------------------------------------------------------------- one-pixel
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


# -------------------------------------------------------------------------------- bad inputs
def test_bad_inputs_give_clear_errors():
    model = small_cnn()
    x, y = data()
    with pytest.raises(ValueError, match="eps"):
        PGD(model, eps=-0.1)
    with pytest.raises(ValueError, match="eps"):
        FGSM(model, eps=torch.tensor([0.1, -0.1, 0.1, 0.1, 0.1, 0.1]))
    with pytest.raises(ValueError, match="eps"):
        PGD(model, eps=torch.full((4,), 0.1))(x, y)
    with pytest.raises(ValueError, match="first dimension"):
        PGD(model)(x, y[:3])
    with pytest.raises(ValueError, match="NaN"):
        xn = x.clone()
        xn[0, 0, 0, 0] = float("nan")
        PGD(model)(xn, y)
    with pytest.raises(ValueError, match="meta"):
        PGD(small_cnn().to("meta"))(x, y)
    with pytest.raises(TypeError, match="float"):
        PGD(model)(x.long(), y)
    with pytest.raises(TypeError):
        PGD(model)(x.double(), y)
    with pytest.raises(ValueError, match="per channel"):
        PGD(model, lo=torch.zeros(5))(x, y)
    with pytest.raises(ValueError, match="lo"):
        PGD(model, lo=1.0, hi=0.0)
    with pytest.raises(TypeError, match="steps"):
        PGD(model, steps=2.5)
    with pytest.raises(ValueError, match="at least 4"):
        OnePixel(model)(x[0], y)
    with pytest.raises(ValueError, match="population"):
        OnePixel(model, population=3)
    with pytest.raises(TypeError, match="int64"):
        OnePixel(model, population=8)(x, y.float())
    with pytest.raises(ValueError, match="CR"):
        OnePixel(model, CR=1.5)
    with pytest.raises(ValueError, match="strategy"):
        OnePixel(model, strategy="best2")
    with pytest.raises(ValueError, match="low <= high"):
        OnePixel(model, F=(1.0, 0.5))
    with pytest.raises(TypeError, match="nn.Module"):
        PGD(lambda t: t)
    with pytest.raises(ValueError, match="finite"):
        PGD(model, eps=torch.tensor([0.1, float("inf"), 0.1, 0.1, 0.1, 0.1]))
    with pytest.raises(ValueError, match="lo has NaN"):
        PGD(model, lo=torch.tensor([0.0, float("nan"), 0.0]))(x, y)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        OnePixel(model, population=8)(x[None], y[:1])
    with pytest.raises(ValueError, match="objective must return"):
        OnePixel(model, population=8, max_iter=1, objective=lambda o, t: (o[:2, 0], o[:, 0] > 0))(x, y)


def test_nan_in_labels_or_extra_inputs_is_named():
    model = TinyPhotoz().eval()
    x, ebv, z = torch.randn(3, 5, 8, 8), torch.rand(3) * 0.1, torch.rand(3)
    bad_ebv, bad_z = ebv.clone(), z.clone()
    bad_ebv[1], bad_z[2] = float("nan"), float("inf")
    with pytest.raises(ValueError, match=r"extra\[0\] has 1 NaN"):
        PGDL2(model, eps=0.5, loss="photoz_dz")(x, z, bad_ebv)
    with pytest.raises(ValueError, match="y has 1 NaN"):
        PGD(model, loss="photoz_dz")(x, bad_z, ebv)
    with pytest.raises(ValueError, match="y has 1 NaN"):
        OnePixel(model, population=8, objective="photoz")(x, bad_z, ebv)


def test_zero_steps_return_a_copy_and_model_mode_survives_an_exception():
    model = small_cnn().train()
    x, y = data()
    out = PGD(model, eps=0.1, steps=0)(x, y)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()

    class Boom(nn.Module):
        def forward(self, t):
            raise RuntimeError("boom")

    boom = nn.Sequential(Boom()).train()
    with pytest.raises(RuntimeError, match="boom"):
        PGD(boom, eps=0.1)(x, y)
    assert boom.training and boom[0].training


def test_photoz_hook_objects_are_not_bound_in_place():
    """One loss object reused on two models with different bins takes each model's own bins."""
    loss = PhotozDeltaZ()
    coarse, fine = TinyPhotoz(n_bins=10).eval(), TinyPhotoz(n_bins=20).eval()
    x, ebv, z = torch.randn(2, 5, 8, 8), torch.rand(2) * 0.1, torch.rand(2)
    PGD(coarse, eps=0.1, steps=1, loss=loss)(x, z, ebv)
    assert loss.bin_centres is None
    PGD(fine, eps=0.1, steps=1, loss=loss)(x, z, ebv)


# ------------------------------------------------------------------------ natural perturbations
def test_natural_noise():
    x = torch.zeros(4000, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    assert gaussian_noise(x, 0.5, generator=g).std().item() == pytest.approx(0.5, rel=0.02)
    u = uniform_noise(x, 0.01, generator=g)
    assert u.abs().max() <= 0.01 and u.std().item() == pytest.approx(0.01 / math.sqrt(3), rel=0.02)
    per = uniform_noise(x[:2], torch.tensor([0.0, 1.0]))
    assert per[0].abs().max() == 0 and per[1].abs().max() > 0
    assert torch.equal(x, torch.zeros_like(x))
    mod = GaussianNoise(0.1)
    assert torch.equal(mod.eval()(x), x) and not torch.equal(mod.train()(x), x)


def test_augmentation_modules_are_seeded_and_checked_at_construction():
    x = torch.rand(4, 3, 6, 6) * 10
    sky = torch.tensor([5.0, 10.0, 20.0])
    for make in (lambda g: GaussianNoise(0.1, generator=g), lambda g: UniformNoise(0.1, generator=g),
                 lambda g: ShorterExposure(sky=sky, exposure_ratio=0.1, generator=g)):
        a = make(torch.Generator().manual_seed(5)).train()(x)
        b = make(torch.Generator().manual_seed(5)).train()(x)
        assert torch.equal(a, b) and not torch.equal(a, x)
        assert torch.equal(make(None).eval()(x), x)
    with pytest.raises(ValueError, match="exposure_ratio"):
        ShorterExposure(sky=1.0, exposure_ratio=2.0)
    with pytest.raises(ValueError, match="sky"):
        ShorterExposure(sky=torch.tensor([1.0, -1.0]), exposure_ratio=0.5)
    with pytest.raises(ValueError, match="sigma"):
        GaussianNoise(-0.1)
    torch.manual_seed(0)
    want = torch.rand(3)
    torch.manual_seed(0)
    GaussianNoise(0.1), UniformNoise(0.1), ShorterExposure(sky=sky, exposure_ratio=0.5)
    assert torch.equal(torch.rand(3), want)  # building the modules draws nothing from the global RNG
    per_sample = GaussianNoise(torch.tensor([0.0, 1.0]), always=True)
    assert per_sample.sigma.shape == (2,) and torch.equal(per_sample(x[:2])[0], x[0])


@pytest.mark.parametrize("noisy_input", [True, False])
def test_shorter_exposure_matches_poisson_variance(noisy_input):
    sky, r, gain = 50.0, 0.1, 2.0
    g = torch.Generator().manual_seed(0)
    src = torch.full((20000, 1, 2, 2), 30.0)  # sky-subtracted signal, ADU of the long exposure
    counts = (src + sky) * gain
    long_var = counts / gain ** 2  # variance (ADU^2) of a real long exposure
    x = src + torch.poisson(counts, generator=g) / gain - (src + sky) if noisy_input else src
    y1 = shorter_exposure(x, sky=sky, exposure_ratio=r, gain=gain, noisy_input=noisy_input, generator=g)
    expect_var = long_var / r
    assert y1.mean().item() == pytest.approx(30.0, abs=0.3)
    assert y1.var().item() == pytest.approx(expect_var[0, 0, 0, 0].item(), rel=0.03)
    torch.testing.assert_close(shorter_exposure(x, sky=sky, exposure_ratio=1.0, gain=gain), x) if noisy_input \
        else None
    with pytest.raises(ValueError, match="exposure_ratio"):
        shorter_exposure(x, sky=sky, exposure_ratio=2.0)


def test_lsst_shorter_exposure_gives_the_simulated_y1_noise():
    from advrobust.data import simulate_morphology, sky_sigma
    d = simulate_morphology(60, seed=4, n_workers=1)
    y10 = torch.from_numpy(d["images_y10"])
    y1 = lsst_shorter_exposure(y10, bands=("g", "r", "i"), years=10, exposure_ratio=0.1,
                               generator=torch.Generator().manual_seed(0))
    # measured: 9.0e-4, 1.05e-3, 1.58e-3 vs the simulator's own Y1: 9.1e-4, 1.05e-3, 1.58e-3 (Y10: 2.9e-4, ...)
    np.testing.assert_allclose(sky_sigma(y1.numpy()), sky_sigma(d["images_y1"]), rtol=0.04)
    assert y1.mean().item() == pytest.approx(y10.mean().item(), abs=2e-4)  # flux kept
    with pytest.raises(ValueError, match="one channel per band"):
        lsst_shorter_exposure(y10, bands=("g", "r"), years=10, exposure_ratio=0.1)


def test_channels_last_is_transparent():
    model = small_cnn(dtype=torch.float64).eval()
    x, y = data(dtype=torch.float64)
    a = PGD(model, eps=0.05, steps=4, channels_last=True)(x, y)
    b = PGD(model, eps=0.05, steps=4, channels_last=False)(x, y)
    torch.testing.assert_close(a, b)
    assert a.is_contiguous() and x.is_contiguous()
    ra = OnePixel(model, population=8, max_iter=2, seed=3, channels_last=True).run(x, y)
    rb = OnePixel(model, population=8, max_iter=2, seed=3, channels_last=False)(x, y)
    torch.testing.assert_close(ra.x_adv, rb)


def test_builtin_loss_needs_y():
    with pytest.raises(ValueError, match="y is required"):
        PGD(small_cnn())(torch.randn(2, 3, 8, 8))


# ------------------------------------------------------------------------------ attack contract
def test_every_attack_returns_a_tensor_when_called_and_a_result_from_run(trained_mlp):
    model, x, y = trained_mlp
    for atk in (FGSM(model, eps=0.5), PGD(model, eps=0.5, steps=3), PGDL2(model, eps=2.0, steps=3),
                OnePixel(model, population=8, max_iter=2, seed=0)):
        x_adv = atk(x, y)
        assert isinstance(x_adv, torch.Tensor) and x_adv.shape == x.shape
        res = atk.run(x, y)
        assert isinstance(res, AttackResult) and res.success.shape == (x.shape[0],)
        assert res.success.dtype == torch.bool and 0.0 <= res.success_rate <= 1.0
        torch.testing.assert_close(res.x_adv, x_adv)
    assert isinstance(OnePixel(model, population=8, max_iter=2, seed=0).run(x, y), OnePixelResult)


def test_gradient_attack_success_is_the_objective_rule(trained_mlp):
    """Classifiers: untargeted success = prediction != y, targeted = prediction == y."""
    model, x, y = trained_mlp
    res = PGD(model, eps=1.0, steps=10).run(x, y)
    with torch.no_grad():
        pred = model(res.x_adv).argmax(1)
    assert torch.equal(res.success, pred != y) and res.success.any()
    target = (y + 1) % 3
    res = PGD(model, eps=1.0, steps=10, targeted=True).run(x, target)
    with torch.no_grad():
        assert torch.equal(res.success, model(res.x_adv).argmax(1) == target)


def test_photoz_gradient_attack_success_is_dz_beyond_the_outlier_cut():
    model = TinyPhotoz().eval()
    x, ebv, z = torch.randn(6, 5, 8, 8), torch.rand(6) * 0.1, torch.rand(6) * 0.9
    for loss in ("photoz_ce", "photoz_dz"):
        res = FGSM(model, eps=0.3, loss=loss).run(x, z, ebv)
        with torch.no_grad():
            zp = torch.softmax(model(res.x_adv, ebv), 1) @ model.bin_centres
        assert torch.equal(res.success, (zp - z).abs() / (1 + z) > 0.05)
    # the objective can be chosen: a custom loss has none by default
    margin = lambda out, yy: out[:, 0]  # noqa: E731
    with pytest.raises(ValueError, match="objective"):
        PGD(model, eps=0.1, steps=1, loss=margin).run(x, z, ebv)
    res = PGD(model, eps=0.1, steps=1, loss=margin, objective=PhotozObjective(threshold=0.5)).run(x, z, ebv)
    with torch.no_grad():
        zp = torch.softmax(model(res.x_adv, ebv), 1) @ model.bin_centres
    assert torch.equal(res.success, (zp - z).abs() / (1 + z) > 0.5)


# ------------------------------------------------------------------- bad models, labels, ranges (issue 12)
class NaNModel(nn.Module):
    """A classifier whose output is NaN for the samples whose first pixel is > 0 (all of them by default)."""

    def __init__(self, everywhere=True):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 3)
        self.everywhere = everywhere

    def forward(self, x):
        out = self.fc(x.flatten(1))
        nan = torch.ones_like(out[:, :1], dtype=torch.bool) if self.everywhere else (x[:, :1, 0, 0] > 0)
        return torch.where(nan, torch.full_like(out, float("nan")), out)


@pytest.mark.parametrize("make", [
    lambda m: FGSM(m, eps=0.1), lambda m: PGD(m, eps=0.1, steps=3), lambda m: PGDL2(m, eps=0.5, steps=3),
    lambda m: OnePixel(m, population=8, max_iter=2, seed=0),
])
def test_nan_model_output_is_an_error_naming_the_samples(make):
    x, y = data()
    with pytest.raises(ValueError, match=r"NaN/Inf for (images|6 of 6 samples).*\[0, 1, 2, 3, 4, 5\]"):
        make(NaNModel()).run(x, y)
    x[:, 0, 0, 0] = -1.0
    x[[1, 4], 0, 0, 0] = 1.0  # only these two
    with pytest.raises(ValueError, match=r"\[1, 4\]"):
        make(NaNModel(everywhere=False))(x, y)


def test_nan_gradient_with_finite_output_is_an_error():
    class SqrtAtZero(nn.Module):  # finite output, NaN gradient where the input is exactly 0
        def forward(self, x):
            return torch.sqrt(x.flatten(1)[:, :3].abs()) * 0 + x.flatten(1)[:, :3]

    x, y = data()
    x[2, 0, 0, 0] = 0.0
    model = SqrtAtZero()
    with pytest.raises(ValueError, match=r"gradient of the loss is NaN/Inf .*samples \[2\]"):
        PGD(model, eps=0.1, steps=1)(x, y)


@pytest.mark.parametrize("bad", [-100, 3, -1])
@pytest.mark.parametrize("make", [
    lambda m: FGSM(m, eps=0.1), lambda m: PGD(m, eps=0.1, steps=2), lambda m: PGDL2(m, eps=0.5, steps=2),
    lambda m: OnePixel(m, population=8, max_iter=2, seed=0),
])
def test_labels_outside_the_classes_are_refused(make, bad):
    x, y = data()
    y[3] = bad
    with pytest.raises(ValueError, match=rf"class indices in \[0, 3\).*\[{bad}\] at samples \[3\]"):
        make(small_cnn())(x, y)


def test_photoz_redshift_markers_are_refused():
    model = TinyPhotoz().eval()
    x, ebv = torch.randn(4, 5, 8, 8), torch.rand(4) * 0.1
    z = torch.tensor([0.3, -99.0, 0.5, -1.0])
    for atk in (PGD(model, eps=0.1, steps=1, loss="photoz_dz"), PGDL2(model, eps=0.5, steps=1, loss="photoz_ce"),
                OnePixel(model, population=8, max_iter=1, objective="photoz", seed=0)):
        with pytest.raises(ValueError, match=r"redshifts <= -1 \[-99.0, -1.0\] at samples \[1, 3\]"):
            atk(x, z, ebv)


@pytest.mark.parametrize("make", [lambda m, **kw: FGSM(m, eps=0.01, **kw), lambda m, **kw: PGD(m, eps=0.01, **kw),
                                  lambda m, **kw: PGDL2(m, eps=0.01, **kw)])
def test_clean_images_outside_lo_hi_are_refused(make):
    x, y = data()
    x = x.clamp(-1, 1)
    x[2, 1, 3, 3] = 4.15
    with pytest.raises(ValueError, match=r"outside \[lo, hi\] = \[-1.0, 1.0\] for 1 samples \(samples \[2\]\)"):
        make(small_cnn(), lo=-1.0, hi=1.0)(x, y)
    with pytest.raises(ValueError, match=r"samples \[2\]"):
        make(small_cnn(), lo=torch.tensor([-1.0, -1.0, -1.0]), hi=torch.tensor([1.0, 1.0, 5.0]))(x, y)
    make(small_cnn(), lo=-1.0, hi=5.0)(x, y)  # inside: fine
