"""Per-band sky-noise estimate from the cutouts themselves, the unit of attack strengths.

Campagne (2021) chose its perturbation size relative to the sky background; on other data the same
number in image units can be far above or below it. :func:`sky_sigma` measures the background noise
of a set of cutouts so that an attack radius can be stated, and chosen, in sky sigmas.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["sky_sigma", "clipped_std", "SKY_METHOD"]

#: ``1 / Phi^-1(3/4)``: turns a median absolute deviation into a Gaussian standard deviation
MAD_TO_SIGMA = 1.482602218505602
#: the standard deviation of a unit Gaussian truncated to +-3: a 3-sigma-clipped std divided by it
#: estimates the untruncated sigma
CLIP = 3.0
_TRUNCATED_STD = float(np.sqrt(1.0 - 2.0 * CLIP * np.exp(-CLIP**2 / 2) / np.sqrt(2 * np.pi) / math.erf(CLIP / np.sqrt(2))))
#: one line saying how :func:`sky_sigma` measures, for reports and command-line output
SKY_METHOD = ("sky sigma per band: 3-sigma-clipped standard deviation of neighbour-pixel differences in an "
              "edge frame of every cutout (4 pixels wide, narrower on stamps under 9 px), divided by sqrt(2) "
              "(advrobust.data.sky_sigma)")


def clipped_std(values: np.ndarray, *, iterations: int = 20) -> float:
    """Gaussian sigma of the core of ``values`` (1-D), ignoring outliers: iterative clipping at
    +-3 sigma around the median, the standard deviation of what is kept divided by that of a unit
    Gaussian truncated to +-3 (0.9866), until the kept set stops changing.

    Unlike a median absolute deviation, this is not quantized on integer data: the MAD of integers
    is an integer (or half of one), so a MAD-based sigma moves in steps of 1.48 counts and reads
    the same for bands whose noise differs by less than a step. Starts from the MAD when it is
    positive, else from the plain standard deviation.
    """
    values = np.asarray(values, dtype=np.float64)
    center = np.median(values)
    scale = MAD_TO_SIGMA * np.median(np.abs(values - center)) or values.std()
    kept = None
    for _ in range(iterations):
        mask = np.abs(values - center) <= CLIP * scale
        if kept is not None and np.array_equal(mask, kept) or not mask.any():
            break
        kept = mask
        center = np.median(values[mask])
        scale = values[mask].std() / _TRUNCATED_STD
    return float(scale)


def sky_sigma(images, *, border: int | None = None) -> np.ndarray:
    """Robust per-band standard deviation of the sky noise, in image units (nanomaggies per pixel
    for :func:`advrobust.data.simulate_photoz` / :func:`~advrobust.data.simulate_morphology`).

    Method: the pixels of a frame ``border`` pixels wide along the four edges of every cutout are
    taken as sky (the galaxy sits in the centre). Within the frame, each pixel is differenced with its
    neighbour along the edge (the top and bottom strips along rows, the left and right strips along
    columns): a smooth background or the wing of a large galaxy cancels in the difference, while
    independent pixel noise of sigma gives differences of sigma * sqrt(2). For each band the
    differences are pooled over all cutouts and the noise is their 3-sigma-clipped standard
    deviation (:func:`clipped_std`) divided by sqrt(2); the clipping ignores the few pairs a
    neighbour, a star or a hot pixel still lights. A clipped standard deviation rather than a MAD:
    on integer data (raw counts, 8-bit images) the MAD is quantized and reads in steps of ~1.05
    counts, identical for bands whose noise differs. Integer data whose noise is well below one count
    (sigma < ~0.5) still read low (15% at 0.4 counts): there the rounding, not the sky, sets the spread. Pixel noise correlated between
    neighbours (resampled, co-added images) makes the estimate low; the simulator's noise is not.
    The level of the sky is not measured, only its noise. (A MAD of the frame pixels themselves
    reads 20-30% high on ``simulate_photoz(z_range=(0.02, 0.4))``, whose nearby galaxies reach the
    edges; the differences read within 4%.)

    Args:
        images: ``(N, C, H, W)`` array-like (numpy array or CPU tensor) of finite real values.
        border: width of the edge frame in pixels, ``1 <= border`` and ``2 * border < min(H, W)``;
            default 4, narrower on stamps under 9 pixels (``(min(H, W) - 1) // 2``).

    Returns:
        float64 array of shape ``(C,)``, the noise sigma of each band in the images' units.

    Raises:
        TypeError: ``images`` is not real-valued, or ``border`` is not an integer.
        ValueError: ``images`` is not 4-D or is empty, holds NaN or infinity, ``border`` does not fit
            the cutouts, or a band's frame is (almost) constant (no noise to measure).

    Example:
        >>> data = simulate_photoz(64, seed=0)
        >>> eps = 2.0 * sky_sigma(data["images"])  # two sky sigmas per band, shape (5,)
    """
    if border is not None and (isinstance(border, bool) or not isinstance(border, (int, np.integer))):
        raise TypeError(f"sky_sigma: border must be an integer, got {border!r} ({type(border).__name__})")
    if hasattr(images, "detach"):  # a torch tensor
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.dtype == object or not (np.issubdtype(images.dtype, np.floating) or np.issubdtype(images.dtype, np.integer)):
        raise TypeError(f"sky_sigma: images must hold real numbers, got dtype {images.dtype}")
    if images.ndim != 4:
        raise ValueError(f"sky_sigma: images must have shape (N, C, H, W), got {images.shape}")
    n, c, h, w = images.shape
    if n == 0 or c == 0:
        raise ValueError(f"sky_sigma: images must hold at least one cutout and one band, got {images.shape}")
    if border is None:
        border = max(1, min(4, (min(h, w) - 1) // 2))
    if border < 1 or 2 * border >= min(h, w):
        raise ValueError(f"sky_sigma: border must satisfy 1 <= border and 2 * border < min(H, W) = {min(h, w)}, "
                         f"got {border}")
    if not np.isfinite(images).all():
        raise ValueError("sky_sigma: images hold NaN or infinite values")
    f = np.float64
    strips = (  # neighbour differences along each edge strip, each (N, C, ...)
        np.diff(images[:, :, :border, :].astype(f), axis=3), np.diff(images[:, :, h - border:, :].astype(f), axis=3),
        np.diff(images[:, :, :, :border].astype(f), axis=2), np.diff(images[:, :, :, w - border:].astype(f), axis=2),
    )
    pooled = np.concatenate([d.transpose(1, 0, 2, 3).reshape(c, -1) for d in strips], axis=1)
    sigma = np.array([clipped_std(band) for band in pooled]) / np.sqrt(2.0)
    if np.any(sigma == 0):
        bands = np.flatnonzero(sigma == 0).tolist()
        raise ValueError(f"sky_sigma: the edge frame of band(s) {bands} is (almost) constant; no noise to measure")
    return sigma
