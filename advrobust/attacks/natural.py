"""Natural (non-adversarial) perturbations, as functions and as augmentation modules.

* :func:`gaussian_noise` — ``x + N(0, sigma^2)``;
* :func:`uniform_noise` — ``x + U[-eps, eps]``, Campagne (2021)'s control (section 3.3: eps = 0.01 leaves
  the photo-z metrics unchanged, 0.1 degrades them);
* :func:`shorter_exposure` — the Poisson noise of a shorter exposure, e.g. the Y10 -> Y1 of
  Ćiprijanović et al. (2022)
  (one year of observing instead of ten: ``exposure_ratio = 0.1``).

Each function returns a new tensor (the input is not modified) and takes a ``generator`` for
reproducibility; :class:`GaussianNoise`, :class:`UniformNoise` and :class:`ShorterExposure` are
thin ``nn.Module`` wrappers to drop into an augmentation pipeline (they perturb in training
mode only unless ``always=True``).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor, nn

from advrobust.checks import (
    ScalarOrPerSample, Unit, broadcast_per_sample, channel_view, check_batch, check_float_tensor, check_number,
    per_sample, unit_per_channel,
)

__all__ = ["gaussian_noise", "uniform_noise", "shorter_exposure", "lsst_shorter_exposure",
           "GaussianNoise", "UniformNoise", "ShorterExposure"]

def _check_x(name: str, x: Tensor) -> None:
    check_float_tensor(name, x, "x")
    check_batch(name, x)


def _scale(name: str, what: str, v: ScalarOrPerSample, x: Tensor, unit: Unit = None) -> ScalarOrPerSample:
    """A float >= 0, or a (B,) tensor broadcast to (B, 1, ..., 1); times the unit (None, a float or a
    per-channel tensor viewed (1, C, 1, ..., 1)) when one is given."""
    v = broadcast_per_sample(per_sample(name, what, v, x), x)
    unit = unit_per_channel(name, unit, x)
    return v if unit is None else v * channel_view(unit, x)


def gaussian_noise(x: Tensor, sigma: ScalarOrPerSample, *, unit: Unit = None,
                   generator: Optional[torch.Generator] = None) -> Tensor:
    """``x + sigma * u[c] * N(0, 1)``, per element.

    Args:
        x: ``(B, C, ...)`` float images, image units.
        sigma: float or per-sample ``(B,)`` tensor, >= 0, in image units (or in ``unit``).
        unit: None (image units), a float or a per-channel ``(C,)`` tensor ``u`` > 0 (e.g. the per-band
            sky sigma: ``sigma = 1`` then adds one more sky sigma of noise in every band).

    Example:
        >>> x_noisy = gaussian_noise(images, 0.05)
    """
    _check_x("gaussian_noise", x)
    s = _scale("gaussian_noise", "sigma", sigma, x, unit)
    return x + s * torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)


def uniform_noise(x: Tensor, eps: ScalarOrPerSample, *, unit: Unit = None,
                  generator: Optional[torch.Generator] = None) -> Tensor:
    """``x + U[-eps * u[c], eps * u[c]]`` per element (Campagne 2021's random control for its eps choice).

    Args:
        x: ``(B, C, ...)`` float images, image units.
        eps: half-width, float or per-sample ``(B,)`` tensor, >= 0, in image units (or in ``unit``).
        unit: None (image units, ``u = 1``), a float or a per-channel ``(C,)`` tensor ``u`` > 0 (e.g. the
            per-band sky sigma: ``eps`` sky sigmas in every band, the box of the L-inf attacks with the
            same unit).

    Raises:
        ValueError: eps < 0 or of the wrong length; unit <= 0, NaN, not 1 or C values (naming ``unit``).

    Example:
        >>> x_noisy = uniform_noise(images, 0.01)
        >>> x_noisy = uniform_noise(images, 2.0, unit=sky_sigma_per_band)  # 2 sky sigmas in every band
    """
    _check_x("uniform_noise", x)
    e = _scale("uniform_noise", "eps", eps, x, unit)
    u = torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    return x + (2.0 * u - 1.0) * e


def shorter_exposure(x: Tensor, *, sky: Union[float, Tensor], exposure_ratio: float, gain: float = 1.0,
                     noisy_input: bool = True, generator: Optional[torch.Generator] = None) -> Tensor:
    r"""Poisson noise of a shorter exposure, in the units of the long one (Ćiprijanović et al. 2022: Y10 -> Y1).

    ``x`` is a sky-subtracted image of the long exposure (e.g. Y10, Ćiprijanović et al. 2022, section 2.2) in ADU,
    ``sky`` the subtracted sky level per pixel in the same units, ``gain`` electrons per ADU,
    ``exposure_ratio = t_short / t_long`` in (0, 1] (Y1 from Y10: 0.1). The result keeps the
    flux scale of ``x`` (what a model trained on the long exposure expects) with the noise of
    the short exposure: total counts ``(x + sky) * gain`` become Poisson with ``r`` times the
    exposure, rescaled by ``1/r``.

    * ``noisy_input=True`` (default, ``x`` is already a real long exposure, with its own
      Poisson noise): only the missing variance ``(x + sky) * gain * (1/r - 1)`` is added, as a
      scaled Poisson draw: ``x + (Poisson(lam) - lam) / (s * gain)`` with
      ``lam = (x + sky) * gain * s``, ``s = r / (1 - r)`` — so the total variance is that of
      the short exposure.
    * ``noisy_input=False`` (``x`` is a noise-free model image):
      ``Poisson((x + sky) * gain * r) / (r * gain) - sky``.

    Counts below zero (negative noise fluctuations in ``x + sky``) are treated as zero mean.

    Args:
        x: ``(B, ...)`` float image(s), sky-subtracted, ADU of the long exposure.
        sky: sky level per pixel (ADU of the long exposure), float or per-channel ``(C,)``.
        exposure_ratio: ``t_short / t_long`` in (0, 1]; 1 returns an unchanged copy
            (``noisy_input=True``).
        gain: electrons per ADU (> 0).

    Example:
        >>> y1 = shorter_exposure(y10, sky=sky_level, exposure_ratio=0.1)
    """
    name = "shorter_exposure"
    _check_x(name, x)
    r = check_number(name, "exposure_ratio", exposure_ratio, positive=True)
    if r > 1:
        raise ValueError(f"{name}: exposure_ratio = t_short / t_long must be in (0, 1], got {r}")
    g = check_number(name, "gain", gain, positive=True)
    if isinstance(sky, Tensor):
        if sky.dim() > 1 or (sky.numel() != 1 and (x.dim() < 2 or sky.numel() != x.shape[1])):
            raise ValueError(f"{name}: sky must be a float or a per-channel (C,) tensor, got shape {tuple(sky.shape)}")
        if bool((sky < 0).any()):
            raise ValueError(f"{name}: sky must be >= 0, got {sky.tolist()}")
        sky_b = sky.to(device=x.device, dtype=x.dtype).reshape((1, -1) + (1,) * (x.dim() - 2))
    else:
        sky_b = check_number(name, "sky", sky)
    counts = ((x + sky_b) * g).clamp_min(0.0)
    if noisy_input:
        if r == 1.0:
            return x.clone()
        s = r / (1.0 - r)
        lam = counts * s
        return x + (torch.poisson(lam, generator=generator) - lam) / (s * g)
    return torch.poisson(counts * r, generator=generator) / (r * g) - sky_b


def lsst_shorter_exposure(x: Tensor, *, bands: Sequence[str], years: float, exposure_ratio: float,
                          generator: Optional[torch.Generator] = None) -> Tensor:
    """:func:`shorter_exposure` for cutouts in nanomaggies of ``years`` of the simulated LSST survey.

    Each band is converted to electrons with the simulator's photometry
    (:func:`advrobust.data.photometry.electrons_per_nanomaggy`, ``sky_electrons_per_pixel``), given
    the Poisson noise of ``years * exposure_ratio`` years, and converted back: with ``years=10`` and
    ``exposure_ratio=0.1`` a Y10 cutout gets the noise of Y1 (Ciprijanovic et al. 2022), the noise
    :func:`advrobust.data.simulate_morphology` gives its ``images_y1``.

    Args:
        x: ``(B, C, H, W)`` sky-subtracted cutouts in nanomaggies, one channel per band of ``bands``.
        bands: the LSST band of each channel, e.g. ``("u", "g", "r", "i", "z")``.
        years: depth of ``x`` in years of the survey (> 0).
        exposure_ratio: ``t_short / t_long`` in (0, 1].

    Raises:
        ValueError: ``len(bands)`` is not ``x``'s channel count, an unknown band, ``years <= 0``.
    """
    from advrobust.data import photometry  # numpy only; imported here so attacks do not load the simulator

    _check_x("lsst_shorter_exposure", x)
    if x.dim() != 4 or x.shape[1] != len(bands):
        raise ValueError(f"lsst_shorter_exposure: x must be (B, C, H, W) with one channel per band of {tuple(bands)}, "
                         f"got shape {tuple(x.shape)}")
    gain = torch.tensor([photometry.electrons_per_nanomaggy(b, years) for b in bands], dtype=x.dtype,
                        device=x.device)
    sky = torch.tensor([photometry.sky_electrons_per_pixel(b, years) for b in bands], dtype=x.dtype, device=x.device)
    g = gain[:, None, None]
    return shorter_exposure(x * g, sky=sky, exposure_ratio=exposure_ratio, gain=1.0, generator=generator) / g


class _Augmentation(nn.Module):
    """Applies ``_fn(x, **settings, generator=generator)`` in training mode, or always with ``always=True``.

    The settings are checked once, at construction, by a call of ``_fn`` on a one-pixel probe
    image (with its own generator, so building the module leaves the global random state alone).
    """

    _fn = None  # the perturbation function

    def __init__(self, *, always: bool, generator: Optional[torch.Generator], **settings) -> None:
        super().__init__()
        self.always = bool(always)
        self.generator = generator
        self._setting_names = tuple(settings)  # the values live in attributes of those names
        for key, value in settings.items():
            setattr(self, key, value)
        per_channel = [v.numel() for k, v in settings.items() if isinstance(v, Tensor) and k in ("sky", "unit")]
        per_sample = [v.numel() for k, v in settings.items() if isinstance(v, Tensor) and k not in ("sky", "unit")]
        probe = torch.ones(max(per_sample, default=1), max(per_channel, default=1), 1, 1)
        type(self)._fn(probe, **settings, generator=torch.Generator())  # a throwaway generator: no global draw

    def _settings(self) -> dict:
        return {name: getattr(self, name) for name in self._setting_names}

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training or self.always):
            return x
        return type(self)._fn(x, **self._settings(), generator=self.generator)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._settings().items()) + f", always={self.always}"


class GaussianNoise(_Augmentation):
    """Module form of :func:`gaussian_noise`: ``GaussianNoise(sigma, unit=None, always=False, generator=None)``."""

    _fn = staticmethod(gaussian_noise)

    def __init__(self, sigma: float, *, unit: Unit = None, always: bool = False,
                 generator: Optional[torch.Generator] = None) -> None:
        super().__init__(always=always, generator=generator, sigma=sigma, unit=unit)


class UniformNoise(_Augmentation):
    """Module form of :func:`uniform_noise`: ``UniformNoise(eps, unit=None, always=False, generator=None)``."""

    _fn = staticmethod(uniform_noise)

    def __init__(self, eps: float, *, unit: Unit = None, always: bool = False,
                 generator: Optional[torch.Generator] = None) -> None:
        super().__init__(always=always, generator=generator, eps=eps, unit=unit)


class ShorterExposure(_Augmentation):
    """Module form of :func:`shorter_exposure` (e.g. ``ShorterExposure(sky=..., exposure_ratio=0.1)``)."""

    _fn = staticmethod(shorter_exposure)

    def __init__(self, *, sky: Union[float, Tensor], exposure_ratio: float, gain: float = 1.0,
                 noisy_input: bool = True, always: bool = False,
                 generator: Optional[torch.Generator] = None) -> None:
        super().__init__(always=always, generator=generator, sky=sky, exposure_ratio=exposure_ratio, gain=gain,
                         noisy_input=noisy_input)
