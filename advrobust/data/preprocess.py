"""Image preprocessing of Ćiprijanović et al. 2022 (DeepAdversaries, section 2.2): percentile clipping
and a colour-preserving arcsinh stretch."""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["percentile_clip", "asinh_stretch"]


def _check_batch(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {images.shape}")
    return images


def percentile_clip(images: np.ndarray, percentiles: Sequence[float] = (0.1, 99.9)) -> np.ndarray:
    """Clip each image (all bands together) to its own ``percentiles``, shape preserved.

    Raises:
        ValueError: not a 4-D batch, or percentiles outside ``0 <= low < high <= 100``.
    """
    images = _check_batch(images)
    low, high = percentiles
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {tuple(percentiles)}")
    flat = images.reshape(len(images), -1)
    bounds = np.percentile(flat, [low, high], axis=1).T.astype(images.dtype)  # (N, 2)
    return np.clip(images, bounds[:, 0, None, None, None], bounds[:, 1, None, None, None])


def asinh_stretch(
    images: np.ndarray, percentiles: Sequence[float] = (0.1, 99.9), softening: float = 0.02
) -> np.ndarray:
    """The display transform of Ćiprijanović et al. (2022): clip, arcsinh stretch preserving colours,
    rescale to [0, 1].

    Per image: clip to ``percentiles`` (:func:`percentile_clip`); with ``I`` the mean over bands and
    ``s = softening * max(image)``, multiply every band by ``asinh(I / s) / (I / s)`` (Lupton et al.
    2004: the stretch depends on the intensity only, so the band ratios of each pixel are kept);
    clip negative values (sky-noise troughs) to 0 and divide by the image's maximum, so that the
    band ratios of every positive pixel survive into the [0, 1] output. The paper gives the steps but not
    its constants; these are ours.

    Args:
        images: ``(N, C, H, W)`` fluxes.
        percentiles: clipping percentiles.
        softening: linear-to-logarithmic transition as a fraction of the image's maximum (> 0).

    Returns:
        float32 array of ``images``' shape with values in [0, 1].
    """
    if not softening > 0:
        raise ValueError(f"softening must be positive, got {softening}")
    clipped = percentile_clip(images, percentiles).astype(np.float64)
    scale = softening * np.abs(clipped).max(axis=(1, 2, 3), keepdims=True)
    scale[scale == 0] = 1.0
    intensity = clipped.mean(axis=1, keepdims=True) / scale
    safe = np.where(np.abs(intensity) < 1e-8, 1.0, intensity)
    gain = np.where(np.abs(intensity) < 1e-8, 1.0, np.arcsinh(safe) / safe)
    stretched = np.clip(clipped * gain, 0.0, None)
    peak = stretched.max(axis=(1, 2, 3), keepdims=True)
    peak[peak == 0] = 1.0
    return (stretched / peak).astype(np.float32)
