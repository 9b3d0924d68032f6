"""Photometry of the survey simulator: SEDs, LSST bands, magnitudes, extinction, distances.

* SEDs: the Coleman, Wu & Weedman (1980) templates E, Sbc, Scd, Im extended to the UV and IR by
  Bolzonella et al. (2000), shipped with GalSim (``share/SEDs/CWW_*_ext.sed``, f_lambda vs Angstrom).
* Bands: LSST total throughputs u, g, r, i, z, y shipped with GalSim (``share/bandpasses/LSST_*.dat``),
  with AB zero points.
* Apparent magnitude of a galaxy of absolute magnitude ``M`` (rest-frame band ``ref_band``) at
  redshift ``z`` in band ``b``: ``m_b = M + DM(z) + [mag_b(SED at z) - mag_ref(SED at rest)] + A_b``.
  GalSim's ``SED.atRedshift`` stretches the wavelengths keeping the photon density, so the bracket is
  exactly the K-correction (including the colour term) for the AB system.
* Galactic extinction: Cardelli, Clayton & Mathis (1989) curve with ``R_V = 3.1`` evaluated at each
  band's effective wavelength, ``A_b = R_V * E(B-V) * (A_lambda / A_V)(lambda_eff)``.
* Distances: flat LambdaCDM with ``H0 = 70 km/s/Mpc``, ``Omega_m = 0.3``.
* LSST instrument: pixel 0.2 arcsec; zero points (magnitude giving 1 electron per second) and dark-sky
  brightness from the LSST overview (Ivezic et al. 2019, Table 2, rounded); 30 s visits with the
  ten-year visit counts of Ivezic et al. (2019, Table 1).
"""
from __future__ import annotations

import functools
import os
from typing import Sequence

import numpy as np

__all__ = [
    "TEMPLATES",
    "LSST_BANDS",
    "PIXEL_SCALE",
    "ZERO_POINT",
    "SKY_BRIGHTNESS",
    "VISITS_10YR",
    "ab_magnitudes",
    "apparent_magnitudes",
    "ccm_extinction",
    "extinction_coefficients",
    "luminosity_distance",
    "angular_diameter_distance",
    "exposure_time",
    "electrons_per_nanomaggy",
    "sky_electrons_per_pixel",
]

#: SED template names, in the order of the integer ``sed_type`` of the photo-z set.
TEMPLATES: tuple[str, ...] = ("E", "Sbc", "Scd", "Im")
LSST_BANDS: tuple[str, ...] = ("u", "g", "r", "i", "z", "y")
#: arcsec per pixel
PIXEL_SCALE = 0.2
#: AB magnitude giving 1 electron per second
ZERO_POINT = {"u": 26.52, "g": 28.51, "r": 28.36, "i": 28.17, "z": 27.78, "y": 26.82}
#: dark-sky brightness, AB mag per arcsec^2
SKY_BRIGHTNESS = {"u": 22.99, "g": 22.26, "r": 21.20, "i": 20.48, "z": 19.60, "y": 18.61}
#: number of 30 s visits in ten years
VISITS_10YR = {"u": 56, "g": 80, "r": 184, "i": 184, "z": 160, "y": 160}
VISIT_SECONDS = 30.0

_H0 = 70.0  # km/s/Mpc
_OMEGA_M = 0.3
_C_KM_S = 299_792.458


def _check_band(band: str) -> None:
    if band not in LSST_BANDS:
        raise ValueError(f"unknown LSST band {band!r}; use one of {', '.join(LSST_BANDS)}")


@functools.lru_cache(maxsize=None)
def _sed(template: str):
    import galsim

    if template not in TEMPLATES:
        raise ValueError(f"unknown SED template {template!r}; use one of {', '.join(TEMPLATES)}")
    path = os.path.join(galsim.meta_data.share_dir, "SEDs", f"CWW_{template}_ext.sed")
    return galsim.SED(path, wave_type="Ang", flux_type="flambda")


@functools.lru_cache(maxsize=None)
def _bandpass(band: str):
    import galsim

    _check_band(band)
    path = os.path.join(galsim.meta_data.share_dir, "bandpasses", f"LSST_{band}.dat")
    return galsim.Bandpass(path, wave_type="nm").withZeropoint("AB")


def ab_magnitudes(template: str, z: float, bands: Sequence[str]) -> np.ndarray:
    """AB magnitudes of the (arbitrarily normalised) template redshifted to ``z``, shape ``(len(bands),)``.

    Only differences between such magnitudes are meaningful (colours, K-corrections).
    """
    if z < 0:
        raise ValueError(f"redshift must be non-negative, got {z}")
    sed = _sed(template).atRedshift(float(z))
    return np.array([sed.calculateMagnitude(_bandpass(b)) for b in bands])


def apparent_magnitudes(
    template: str, z: float, absolute_mag: float, bands: Sequence[str], ref_band: str = "i", ebv: float = 0.0
) -> np.ndarray:
    """Observed AB magnitudes in ``bands`` of a galaxy, shape ``(len(bands),)``.

    Args:
        template: SED template name (:data:`TEMPLATES`).
        z: redshift (> 0).
        absolute_mag: absolute AB magnitude in the rest-frame ``ref_band``.
        bands: LSST bands to observe in.
        ref_band: band of ``absolute_mag``.
        ebv: Galactic reddening E(B-V) in magnitudes.
    """
    if z <= 0:
        raise ValueError(f"redshift must be positive for a distance modulus, got {z}")
    distance_modulus = 5.0 * np.log10(luminosity_distance(z) * 1e5)  # Mpc / 10 pc
    k_term = ab_magnitudes(template, z, bands) - ab_magnitudes(template, 0.0, (ref_band,))[0]
    return absolute_mag + distance_modulus + k_term + ebv * extinction_coefficients(bands)


def ccm_extinction(wavelength_nm: np.ndarray | float, r_v: float = 3.1) -> np.ndarray:
    """Cardelli, Clayton & Mathis (1989) ``A_lambda / A_V`` for 303 nm to 3.3 micron.

    Raises:
        ValueError: a wavelength outside the infrared and optical ranges of the fit.
    """
    x = 1000.0 / np.asarray(wavelength_nm, dtype=np.float64)  # inverse micron
    if np.any((x < 0.3) | (x > 3.3)):
        raise ValueError("ccm_extinction covers 303 nm to 3333 nm (x = 0.3 to 3.3 per micron)")
    infrared = x < 1.1
    y = x - 1.82
    a_opt = np.polyval([0.32999, -0.77530, 0.01979, 0.72085, -0.02427, -0.50447, 0.17699, 1.0], y)
    b_opt = np.polyval([-2.09002, 5.30260, -0.62251, -5.38434, 1.07233, 2.28305, 1.41338, 0.0], y)
    a = np.where(infrared, 0.574 * x**1.61, a_opt)
    b = np.where(infrared, -0.527 * x**1.61, b_opt)
    return a + b / r_v


@functools.lru_cache(maxsize=None)
def _extinction_coefficient(band: str, r_v: float) -> float:
    return float(r_v * ccm_extinction(_bandpass(band).effective_wavelength, r_v))


def extinction_coefficients(bands: Sequence[str], r_v: float = 3.1) -> np.ndarray:
    """``R_b = A_b / E(B-V)`` for each band (CCM at the band's effective wavelength), shape ``(len(bands),)``."""
    return np.array([_extinction_coefficient(b, r_v) for b in bands])


@functools.lru_cache(maxsize=1)
def _comoving_table() -> tuple[np.ndarray, np.ndarray]:
    z = np.linspace(0.0, 10.0, 20_001)
    inverse_e = 1.0 / np.sqrt(_OMEGA_M * (1.0 + z) ** 3 + 1.0 - _OMEGA_M)
    steps = 0.5 * (inverse_e[1:] + inverse_e[:-1]) * np.diff(z)
    return z, (_C_KM_S / _H0) * np.concatenate([[0.0], np.cumsum(steps)])


def _comoving_distance(z: np.ndarray | float) -> np.ndarray:
    grid, distance = _comoving_table()
    z = np.asarray(z, dtype=np.float64)
    if np.any((z < 0) | (z > grid[-1])):
        raise ValueError(f"redshift must lie in [0, {grid[-1]}]")
    return np.interp(z, grid, distance)


def luminosity_distance(z: np.ndarray | float) -> np.ndarray:
    """Luminosity distance in Mpc (flat LambdaCDM, H0 = 70, Omega_m = 0.3)."""
    return (1.0 + np.asarray(z)) * _comoving_distance(z)


def angular_diameter_distance(z: np.ndarray | float) -> np.ndarray:
    """Angular-diameter distance in Mpc (flat LambdaCDM, H0 = 70, Omega_m = 0.3)."""
    return _comoving_distance(z) / (1.0 + np.asarray(z))


def exposure_time(band: str, years: float) -> float:
    """Total LSST exposure in seconds accumulated in ``band`` after ``years`` years."""
    _check_band(band)
    if years <= 0:
        raise ValueError(f"years of observation must be positive, got {years}")
    return VISITS_10YR[band] / 10.0 * years * VISIT_SECONDS


def electrons_per_nanomaggy(band: str, years: float) -> float:
    """Electrons collected from a 1 nanomaggy (AB mag 22.5) source in ``years`` of LSST in ``band``."""
    return exposure_time(band, years) * 10.0 ** (0.4 * (ZERO_POINT[band] - 22.5))


def sky_electrons_per_pixel(band: str, years: float) -> float:
    """Mean dark-sky electrons per pixel after ``years`` of LSST in ``band``."""
    sky_flux = 10.0 ** (-0.4 * (SKY_BRIGHTNESS[band] - ZERO_POINT[band])) * PIXEL_SCALE**2
    return exposure_time(band, years) * sky_flux
