"""Attack strengths in per-channel units (``unit=``): no unit is today's attack bit for bit, a unit
is exactly the attack on the whitened images x / u, the per-band boxes and balls hold, the success is
judged on the real model, and the unit reaches the noise, the named attacks and adversarial training."""
import pytest
import torch
from torch import nn

from advrobust.attacks import FGSM, PGD, PGDL2, fgsm, pgd, pgd_l2, uniform_noise
from advrobust.attacks.by_name import AttackSettings, attack_by_name, make_attack
from advrobust.attacks.losses import PhotozObjective
from advrobust.attacks.natural import UniformNoise, gaussian_noise
from advrobust.defenses import AdversarialTraining
from advrobust.models import create
from advrobust.train import Batch, Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: photo-z ugriz sky sigma (nanomaggies), 3.4x apart
SKY5 = torch.tensor([6.2e-4, 2.9e-4, 3.4e-4, 5.2e-4, 9.8e-4])
SKY3 = SKY5[[0, 1, 4]]


def classifier(dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).to(dtype)


def batch(dtype=torch.float32, n=6):
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(n, 3, 8, 8, generator=g) * 2e-2 + 1e-3 * torch.randn(n, 3, 8, 8, generator=g)).to(dtype)
    return x, torch.randint(0, 3, (n,), generator=g)


class Whitened(nn.Module):
    """The definition: model_w(x_w) = model(x_w * u[c])."""

    def __init__(self, model, unit):
        super().__init__()
        self.model, self.unit = model, unit

    def forward(self, x_w):
        return self.model(x_w * self.unit.view(1, -1, 1, 1))


def gen(seed=3):
    return torch.Generator().manual_seed(seed)


def band(v):
    return v.view(1, -1, 1, 1)


def test_no_unit_and_unit_one_are_todays_attack_bit_for_bit():
    model, (x, y) = classifier(), batch()
    lo, hi = -0.01, torch.tensor([0.03, 0.04, 0.05])
    for make in (lambda **k: FGSM(model, 0.01, lo=lo, hi=hi, **k),
                 lambda **k: PGD(model, 0.01, steps=4, random_start=True, generator=gen(), lo=lo, hi=hi, **k),
                 lambda **k: PGDL2(model, 0.05, steps=4, random_start=True, generator=gen(), lo=lo, hi=hi, **k)):
        today = make()(x, y)
        for unit in (None, 1.0, torch.ones(3)):
            assert torch.equal(make(unit=unit)(x, y), today), unit


def test_fgsm_with_unit_equals_the_float64_oracle():
    model, (x, y) = classifier(torch.float64), batch(torch.float64)
    unit = SKY3.double()
    lo, hi = torch.tensor([-1e-3, -1e-3, -1e-3]).double(), torch.tensor([0.02, 0.021, 0.05]).double()
    x = torch.minimum(torch.maximum(x, band(lo)), band(hi))
    eps = 2.0
    xg = x.clone().requires_grad_(True)
    nn.functional.cross_entropy(model(xg), y, reduction="sum").backward()
    oracle = torch.minimum(torch.maximum(x + eps * band(unit) * xg.grad.sign(), band(lo)), band(hi))
    got = FGSM(model, eps, lo=lo, hi=hi, unit=unit)(x, y)
    torch.testing.assert_close(got, oracle, rtol=0, atol=1e-15)
    torch.testing.assert_close(fgsm(model, x, y, eps=eps, lo=lo, hi=hi, unit=unit), got, rtol=0, atol=0)
    # the budget differs per band: band 2's largest move is 3.4x band 1's
    move = (got - x).abs().amax((0, 2, 3))
    assert torch.allclose(move, eps * unit, rtol=1e-9)


def test_pgd_linf_with_unit_is_the_whitened_attack_within_the_per_band_box():
    model, (x, y) = classifier(), batch()
    eps, unit = 3.0, SKY3
    got = PGD(model, eps, alpha=1.0, steps=5, random_start=True, generator=gen(), unit=unit)(x, y)
    hand = PGD(Whitened(model, unit), eps, alpha=1.0, steps=5, random_start=True, generator=gen())(x / band(unit), y)
    torch.testing.assert_close(got, hand * band(unit), rtol=0, atol=0)
    move = (got - x).abs().amax((0, 2, 3))
    assert (move <= eps * unit * (1 + 1e-5)).all() and (move >= 0.9 * eps * unit).all(), move
    torch.testing.assert_close(pgd(model, x, y, eps=eps, alpha=1.0, steps=5, random_start=True, generator=gen(),
                                   unit=unit), got, rtol=0, atol=0)


def test_pgd_l2_with_unit_is_the_whitened_attack_in_the_chi_ball():
    model, (x, y) = classifier(), batch()
    eps, unit = 4.0, SKY3
    got = PGDL2(model, eps, steps=6, random_start=True, generator=gen(), unit=unit)(x, y)
    hand = PGDL2(Whitened(model, unit), eps, steps=6, random_start=True, generator=gen())(x / band(unit), y)
    torch.testing.assert_close(got, hand * band(unit), rtol=0, atol=0)
    chi = ((got - x) / band(unit)).flatten(1).norm(dim=1)
    assert (chi <= eps * (1 + 1e-5)).all() and (chi > 0.5 * eps).all(), chi
    torch.testing.assert_close(pgd_l2(model, x, y, eps=eps, steps=6, random_start=True, generator=gen(),
                                      unit=unit), got, rtol=0, atol=0)


def test_unit_with_lo_hi_stays_inside_the_range():
    model, (x, y) = classifier(), batch()
    lo, hi = torch.tensor([0.0, 1e-3, -1e-3]), torch.tensor([0.02, 0.022, 0.03])
    x = torch.minimum(torch.maximum(x, band(lo)), band(hi))
    for atk in (FGSM(model, 20.0, lo=lo, hi=hi, unit=SKY3),
                PGD(model, 20.0, steps=3, random_start=True, generator=gen(), lo=lo, hi=hi, unit=SKY3),
                PGDL2(model, 200.0, steps=3, random_start=True, generator=gen(), lo=lo, hi=hi, unit=SKY3)):
        x_adv = atk(x, y)
        assert (x_adv >= band(lo)).all() and (x_adv <= band(hi)).all(), type(atk).__name__
        assert (x_adv == band(hi)).any() and (x_adv == band(lo)).any()  # the clamp was active


def test_run_judges_success_on_the_real_model_and_images():
    model, (x, y) = classifier(), batch(n=16)
    atk = PGD(model, 30.0, steps=5, unit=SKY3)
    res = atk.run(x, y)
    assert atk.model is model
    with torch.no_grad():
        assert torch.equal(res.success, model(res.x_adv).argmax(1) != y)
    assert 0 < int(res.success.sum())  # something was fooled, so the check above can fail


def test_photoz_loss_with_unit_reads_the_models_bins_and_judges_dz():
    torch.manual_seed(0)
    model = create("photoz_small", image_size=16, n_bins=20).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 5, 16, 16, generator=g) * 1e-2
    ebv, z = torch.rand(4, generator=g) * 0.1, torch.rand(4, generator=g) * 0.3 + 0.05
    res = PGD(model, 5.0, steps=3, loss="photoz_ce", unit=SKY5).run(x, z, ebv)
    assert ((res.x_adv - x).abs().amax((0, 2, 3)) <= 5.0 * SKY5 * (1 + 1e-5)).all()
    with torch.no_grad():
        _, success = PhotozObjective(model.bin_centres)(model(res.x_adv, ebv), z)
    assert torch.equal(res.success, success)


def test_uniform_noise_with_unit_fills_each_bands_box():
    x = torch.zeros(8, 5, 16, 16)
    eps = 2.0
    delta = uniform_noise(x, eps, unit=SKY5, generator=gen())
    reach = delta.abs().amax((0, 2, 3))
    assert (reach <= eps * SKY5 * (1 + 1e-6)).all() and (reach >= 0.99 * eps * SKY5).all(), reach
    module = UniformNoise(eps, unit=SKY5, always=True, generator=gen())
    assert torch.equal(module(x), delta)
    assert torch.equal(uniform_noise(x, eps, unit=None, generator=gen()), uniform_noise(x, eps, generator=gen()))
    sd = (gaussian_noise(x, 1.0, unit=SKY5, generator=gen()) / band(SKY5)).std((0, 2, 3))
    assert ((sd - 1).abs() < 0.05).all(), sd


def test_named_attacks_and_adversarial_training_pass_the_unit_on():
    model, (x, y) = classifier(), batch()
    settings = AttackSettings(eps=2.0, pgd_steps=3, unit=SKY3)
    assert settings.unit == tuple(SKY3.double().tolist()) and settings.as_dict()["unit"] == settings.unit
    for name in ("fgsm", "pgd", "noise"):
        atk = attack_by_name(name, model, settings, task="classifier", image_shape=(3, 8, 8), generator=gen())
        move = (atk(x, y) - x).abs().amax((0, 2, 3))
        assert (move <= 2.0 * SKY3 * (1 + 1e-5)).all() and (move > 1.5 * SKY3).all(), (name, move)
    atk = make_attack("pgd_l2", model, 3.0, loss="ce", steps=3, unit=SKY3, generator=gen())
    assert (((atk(x, y) - x) / band(SKY3)).flatten(1).norm(dim=1) <= 3.0 * (1 + 1e-5)).all()

    trainer = Trainer(model, "ce", progress=False)
    out = AdversarialTraining("pgd", 2.0, fraction=1.0, steps=2, unit=SKY3)(trainer, Batch(x, y))
    move = (out.x - x).abs().amax((0, 2, 3))
    assert (move <= 2.0 * SKY3 * (1 + 1e-5)).all() and (move > 1.5 * SKY3).all(), move


@pytest.mark.parametrize("unit", [-1.0, 0.0, float("nan"), float("inf"), torch.tensor([1.0, -2.0, 1.0]),
                                  torch.tensor([1.0, 0.0, 1.0]), torch.tensor([1.0, float("nan"), 1.0]),
                                  torch.ones(3, 1)])
def test_bad_unit_is_refused_naming_it(unit):
    model, (x, _) = classifier(), batch()
    for call in (lambda: FGSM(model, 0.01, unit=unit), lambda: PGDL2(model, 0.1, unit=unit),
                 lambda: uniform_noise(x, 0.01, unit=unit), lambda: UniformNoise(0.01, unit=unit),
                 lambda: AttackSettings(eps=1.0, unit=unit), lambda: AdversarialTraining("fgsm", 0.1, unit=unit)):
        with pytest.raises(ValueError, match="unit"):
            call()


def test_unit_of_the_wrong_length_is_refused_against_the_images():
    model, (x, y) = classifier(), batch()
    for call in (lambda: PGD(model, 0.01, unit=torch.ones(2))(x, y), lambda: uniform_noise(x, 0.1, unit=torch.ones(5))):
        with pytest.raises(ValueError, match="unit.*C=3"):
            call()
