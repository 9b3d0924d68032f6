"""sky_sigma: the per-band sky noise of the simulator's cutouts, and clear errors for bad input."""
import numpy as np
import pytest
import torch

from advrobust.data import simulate_morphology, simulate_photoz, sky_sigma
from advrobust.data.photometry import PIXEL_SCALE, SKY_BRIGHTNESS, VISITS_10YR, ZERO_POINT


def expected_sky_sigma(bands, years):
    """Sky noise in nanomaggies per pixel, from the LSST constants: sqrt(sky electrons) / (electrons per nanomaggy)."""
    out = []
    for b in bands:
        seconds = VISITS_10YR[b] / 10.0 * years * 30.0
        electrons_per_nmgy = seconds * 10.0 ** (0.4 * (ZERO_POINT[b] - 22.5))
        sky_electrons = seconds * 10.0 ** (-0.4 * (SKY_BRIGHTNESS[b] - ZERO_POINT[b])) * PIXEL_SCALE**2
        out.append(np.sqrt(sky_electrons) / electrons_per_nmgy)
    return np.array(out)


def test_photoz_cutouts_match_the_simulated_sky_noise():
    # z < 0.4: nearby galaxies whose light reaches the cutouts' edges (a plain MAD of the frame reads 20-30% high)
    images = simulate_photoz(16, seed=3, z_range=(0.02, 0.4), n_workers=1)["images"]
    sigma = sky_sigma(images)
    assert sigma.shape == (5,) and sigma.dtype == np.float64
    np.testing.assert_allclose(sigma, expected_sky_sigma("ugriz", 10.0), rtol=0.1)


def test_morphology_cutouts_match_both_depths():
    data = simulate_morphology(6, seed=3, n_workers=1)
    np.testing.assert_allclose(sky_sigma(data["images_y10"]), expected_sky_sigma("gri", 10.0), rtol=0.1)
    np.testing.assert_allclose(sky_sigma(data["images_y1"]), expected_sky_sigma("gri", 1.0), rtol=0.1)


def test_bright_centre_and_frame_outliers_are_ignored():
    rng = np.random.default_rng(0)
    sigmas = np.array([1.0, 0.01, 3e-4])
    images = rng.normal(0.0, 1.0, size=(20, 3, 32, 32)) * sigmas[:, None, None]
    images[:, :, 8:24, 8:24] += 50.0 * sigmas[:, None, None]  # a galaxy far above the noise
    images[:, :, 0, :3] = 1e3  # a few hot pixels (a neighbour) in the frame
    images += rng.normal(0.0, 5.0, size=(20, 3, 1, 1)) * sigmas[:, None, None]  # per-cutout offsets
    images += np.linspace(0.0, 20.0, 32) * sigmas[:, None, None]  # a smooth gradient across each cutout
    np.testing.assert_allclose(sky_sigma(images), sigmas, rtol=0.05)
    np.testing.assert_allclose(sky_sigma(torch.from_numpy(images).float()), sigmas, rtol=0.05)
    # the whole-image spread, by contrast, is dominated by the galaxy: the frame is what makes it work
    assert np.all(images.transpose(1, 0, 2, 3).reshape(3, -1).std(axis=1) > 10 * sigmas)


def test_border_width_changes_little_on_noise():
    rng = np.random.default_rng(1)
    images = rng.normal(0.0, 2e-3, size=(8, 2, 40, 40))
    for border in (1, 4, 19):
        np.testing.assert_allclose(sky_sigma(images, border=border), [2e-3, 2e-3], rtol=0.1)


@pytest.mark.parametrize(
    "images, kwargs, error, match",
    [
        (np.zeros((4, 64, 64)), {}, ValueError, r"\(N, C, H, W\)"),
        (np.zeros((0, 5, 64, 64)), {}, ValueError, "at least one cutout"),
        (np.full((1, 2, 16, 16), np.nan), {}, ValueError, "NaN or infinite"),
        (np.ones((2, 2, 16, 16)), {}, ValueError, r"band\(s\) \[0, 1\]"),
        (np.zeros((2, 2, 16, 16), dtype=complex), {}, TypeError, "real numbers"),
        (np.array([[[["a"]]]]), {}, TypeError, "real numbers"),
        (np.zeros((2, 2, 16, 16)), {"border": 8}, ValueError, "border must satisfy"),
        (np.zeros((2, 2, 16, 16)), {"border": 0}, ValueError, "border must satisfy"),
        (np.zeros((2, 2, 16, 16)), {"border": 2.0}, TypeError, "border must be an integer"),
        (np.zeros((2, 2, 16, 16)), {"border": True}, TypeError, "border must be an integer"),
        (np.zeros((2, 2, 16, 16), dtype=np.uint8), {"border": 1}, ValueError, "almost"),
    ],
)
def test_bad_input_raises(images, kwargs, error, match):
    with pytest.raises(error, match=match):
        sky_sigma(images, **kwargs)
