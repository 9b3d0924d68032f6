"""Natural perturbations: noise, the augmentation modules and shorter exposures."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from advrobust.attacks import (
    gaussian_noise, GaussianNoise, lsst_shorter_exposure, shorter_exposure, ShorterExposure, uniform_noise,
    UniformNoise,
)

from attack_helpers import _restore_rng  # noqa: F401 (fixtures)


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
