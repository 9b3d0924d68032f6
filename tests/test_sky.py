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


def test_integer_poisson_skies_read_each_band_within_3_percent_whatever_the_sample_size():
    rng = np.random.default_rng(0)
    means = np.array([20.0, 5.0, 40.0])  # sky counts per pixel: sigma sqrt(mean) = 4.47, 2.24, 6.32
    images = rng.poisson(np.broadcast_to(means[None, :, None, None], (200, 3, 64, 64))).astype(np.uint16)
    for n in (10, 50, 200):
        np.testing.assert_allclose(sky_sigma(images[:n]), np.sqrt(means), rtol=0.03)


def test_quantized_bands_of_different_noise_do_not_read_alike():
    # integer-rounded Gaussian skies of sigma 4.45 and 5.93 (plus rounding noise of 1/sqrt(12))
    rng = np.random.default_rng(2)
    sigmas = np.array([4.45, 5.93])
    images = np.round(100 + rng.normal(size=(100, 2, 64, 64)) * sigmas[:, None, None])
    expected = np.sqrt(sigmas**2 + 1 / 12)
    np.testing.assert_allclose(sky_sigma(images), expected, rtol=0.03)


def test_crowded_gaussian_skies_with_sources_in_the_frame():
    rng = np.random.default_rng(3)
    sigmas = np.array([2e-3, 1e-3, 5e-4])
    n, size = 100, 48
    images = rng.normal(size=(n, 3, size, size)) * sigmas[:, None, None]
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):  # a galaxy in the centre and five stars anywhere, edges included
        images[i] += 40 * sigmas[:, None, None] * np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / 50.0)
        for y, x in rng.uniform(0, size, (5, 2)):
            images[i] += 30 * sigmas[:, None, None] * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 2.0)
    # the stars' faint wings survive the clipping: this crowded case reads ~3% high (measured 2-3%)
    np.testing.assert_allclose(sky_sigma(images), sigmas, rtol=0.05)


def _astropy_test_file(name):
    import os

    import astropy

    return os.path.join(os.path.dirname(astropy.__file__), "io", "fits", "tests", "data", name)


@pytest.mark.parametrize("name, hdu", [("test0.fits", 1), ("test0.fits", 2), ("test0.fits", 3),
                                       ("o4sp040b0_raw.fits", 1)])
def test_real_hst_frames_agree_with_astropy_clipped_std(name, hdu):
    """Real integer frames shipped with astropy (HST WFPC2 chips, a raw STIS frame), cut into stamps,
    against astropy's sigma-clipped standard deviation of the whole frame (an independent estimate;
    these frames are sky-dominated). A MAD of their pixels reads 1.48 on every one of them."""
    from astropy.io import fits
    from astropy.stats import sigma_clipped_stats

    with fits.open(_astropy_test_file(name)) as hdus:
        frame = hdus[hdu].data.astype(np.float32)
    stamps = np.stack([frame[y:y + 20, x:x + 20] for y in range(0, frame.shape[0] - 19, 20)
                       for x in range(0, frame.shape[1] - 19, 20)])[:, None]
    reference = sigma_clipped_stats(frame)[2]
    np.testing.assert_allclose(sky_sigma(stamps), [reference], rtol=0.08)


def test_small_stamps_get_a_narrower_frame():
    rng = np.random.default_rng(4)
    images = rng.normal(0.0, 3.0, size=(400, 1, 7, 7))
    np.testing.assert_allclose(sky_sigma(images), [3.0], rtol=0.05)  # border 3 on 7 px stamps
    with pytest.raises(ValueError, match="border must satisfy"):
        sky_sigma(np.zeros((2, 1, 2, 2)))
