"""Gradient attacks (FGSM, PGD, PGD-L2) against plain PyTorch oracles: bounds, random starts,
losses, the photo-z path and success judged by the objective. Small models only."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advrobust.attacks import (
    eps_l2_equal_volume, fgsm, FGSM, pgd, PGD, pgd_l2, PGDL2, PhotozDeltaZ, PhotozObjective,
)

from attack_helpers import (  # noqa: F401 (fixtures)
    _restore_rng, small_cnn, TinyPhotoz, trained_mlp, plain_pgd, plain_pgd_l2, data,
)


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


def test_user_loss_hook():
    model = small_cnn().eval()
    x, y = data()
    calls = []

    def margin(out, yy):
        calls.append(out.shape)
        return out.gather(1, yy.view(-1, 1)).squeeze(1).neg()

    xa = PGD(model, eps=0.1, steps=3, loss=margin)(x, y)
    assert len(calls) == 3 and calls[0] == (6, 3) and (xa - x).abs().max() <= 0.1 + 1e-6


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


def test_photoz_loss_needs_bin_centres():
    with pytest.raises(ValueError, match="bin_centres"):
        PGD(small_cnn(), loss="photoz_dz")


def test_photoz_hook_objects_are_not_bound_in_place():
    """One loss object reused on two models with different bins takes each model's own bins."""
    loss = PhotozDeltaZ()
    coarse, fine = TinyPhotoz(n_bins=10).eval(), TinyPhotoz(n_bins=20).eval()
    x, ebv, z = torch.randn(2, 5, 8, 8), torch.rand(2) * 0.1, torch.rand(2)
    PGD(coarse, eps=0.1, steps=1, loss=loss)(x, z, ebv)
    assert loss.bin_centres is None
    PGD(fine, eps=0.1, steps=1, loss=loss)(x, z, ebv)


def test_builtin_loss_needs_y():
    with pytest.raises(ValueError, match="y is required"):
        PGD(small_cnn())(torch.randn(2, 3, 8, 8))


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


def test_nan_gradient_with_finite_output_is_an_error():
    class SqrtAtZero(nn.Module):  # finite output, NaN gradient where the input is exactly 0
        def forward(self, x):
            return torch.sqrt(x.flatten(1)[:, :3].abs()) * 0 + x.flatten(1)[:, :3]

    x, y = data()
    x[2, 0, 0, 0] = 0.0
    model = SqrtAtZero()
    with pytest.raises(ValueError, match=r"gradient of the loss is NaN/Inf .*samples \[2\]"):
        PGD(model, eps=0.1, steps=1)(x, y)


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
