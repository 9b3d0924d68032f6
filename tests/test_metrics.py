"""Photo-z metrics against hand-computed values."""
import numpy as np
import pytest
import torch

from advrobust.metrics import delta_z, photoz_metrics, sigma_mad


def test_hand_computed_values():
    z_spec = np.array([0.0, 0.5, 1.0, 0.25])
    z_phot = np.array([0.01, 0.5, 1.2, 0.25 - 0.0625])
    # dz = [0.01, 0, 0.1, -0.05]
    np.testing.assert_allclose(delta_z(z_phot, z_spec), [0.01, 0.0, 0.1, -0.05], atol=1e-15)
    m = photoz_metrics(torch.tensor(z_phot), torch.tensor(z_spec))
    assert m["bias"] == pytest.approx(0.015)
    # median(dz) = 0.005; |dz - 0.005| = [0.005, 0.005, 0.095, 0.055] -> median 0.03
    assert m["sigma_mad"] == pytest.approx(1.4826 * 0.03)
    assert m["eta"] == pytest.approx(0.25)  # only 0.1 is above 0.05; -0.05 is not strictly above
    assert set(m) == {"bias", "sigma_mad", "eta"}


def test_sigma_mad_of_a_gaussian():
    dz = np.random.default_rng(0).normal(0.0, 0.02, 200_000)
    assert sigma_mad(dz) == pytest.approx(0.02, rel=0.01)


def test_errors():
    with pytest.raises(ValueError, match="same length"):
        photoz_metrics([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        photoz_metrics([np.nan], [0.1])
    with pytest.raises(ValueError, match="1-D"):
        photoz_metrics(np.zeros((2, 2)), np.zeros((2, 2)))
