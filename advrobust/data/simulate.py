"""GalSim survey simulator: photo-z cutouts (5 x 64 x 64, ugriz) and morphology cutouts (3 x 100 x 100, gri).

Every galaxy is a sum of components, each an achromatic GalSim profile of unit flux with its own
SED template. A component is drawn once (convolved with the galaxy's PSF, the same in every band)
and scaled by its flux in each band, so a 5-band galaxy costs one FFT draw per component.
Photometry (SEDs, K-corrections, extinction, LSST zero points, sky and exposure) is described in
:mod:`advrobust.data.photometry`.

Noise: the sky (dark-sky brightness of each band) is added, Poisson electrons are drawn for the
total exposure, and the mean sky is subtracted, as in Ćiprijanović et al. 2022 (section 2.2).
Images are in nanomaggies per pixel (AB magnitude 22.5 = 1 nanomaggy), pixels of 0.2 arcsec.

Randomness: galaxy ``k`` of a call with ``seed`` uses its own generator
``numpy.random.default_rng([seed, k])``, so the output depends on ``(n, seed, arguments)`` only,
never on the number of worker processes.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from advrobust.data import photometry
from advrobust.data.preprocess import asinh_stretch

__all__ = ["simulate_photoz", "simulate_morphology", "MORPHOLOGY_CLASSES", "PHOTOZ_BANDS", "MORPHOLOGY_BANDS"]

PHOTOZ_BANDS: tuple[str, ...] = ("u", "g", "r", "i", "z")
MORPHOLOGY_BANDS: tuple[str, ...] = ("g", "r", "i")
#: class index -> name of the morphology labels
MORPHOLOGY_CLASSES: tuple[str, ...] = ("spiral", "elliptical", "merger")

ARCSEC_PER_RADIAN = 206_264.806
#: Sersic profiles are truncated at this many half-light radii (keeps the FFTs small)
SERSIC_TRUNCATION = 5.0
#: FWHM (arcsec) of the Gaussian optics + sensor term convolved with the Kolmogorov atmosphere
OPTICS_FWHM = 0.3

# Photo-z population, per template of photometry.TEMPLATES (E, Sbc, Scd, Im):
_TEMPLATE_FRACTIONS = (0.25, 0.30, 0.25, 0.20)
_ABSOLUTE_MAG_I = ((-21.5, 0.7), (-21.2, 0.7), (-20.8, 0.7), (-20.0, 0.7))  # mean, sigma (AB, rest i)
_SERSIC_INDEX = ((3.0, 5.0), (1.5, 2.5), (1.0, 1.5), (0.6, 1.2))  # uniform range
_RADIUS_KPC = ((3.0, 0.2), (4.5, 0.2), (4.0, 0.2), (2.5, 0.2))  # median, sigma in dex (half light)


@dataclass(frozen=True)
class _Component:
    """A unit-flux profile (arcsec units) and its AB magnitude in each band."""

    profile: Any  # galsim.GSObject
    magnitudes: np.ndarray  # (n_bands,)


def _sersic(index: float, half_light_radius: float):
    import galsim

    # Quantising n lets GalSim reuse its cached Hankel tables (a new n costs tens of milliseconds).
    index = float(np.clip(np.round(index * 4.0) / 4.0, 0.5, 6.0))
    return galsim.Sersic(n=index, half_light_radius=half_light_radius, trunc=SERSIC_TRUNCATION * half_light_radius)


def _psf(seeing_fwhm: float):
    import galsim

    return galsim.Convolve(galsim.Kolmogorov(fwhm=seeing_fwhm), galsim.Gaussian(fwhm=OPTICS_FWHM))


def _render(components: Sequence[_Component], psf: Any, size: int) -> np.ndarray:
    """Noiseless image in nanomaggies per pixel, shape ``(n_bands, size, size)``, float64."""
    import galsim

    image = None
    for component in components:
        stamp = galsim.Convolve(component.profile, psf).drawImage(nx=size, ny=size, scale=photometry.PIXEL_SCALE)
        fluxes = 10.0 ** (-0.4 * (component.magnitudes - 22.5))
        layer = fluxes[:, None, None] * stamp.array[None].astype(np.float64)
        image = layer if image is None else image + layer
    return image


def _observe(image: np.ndarray, bands: Sequence[str], years: float, rng: np.random.Generator) -> np.ndarray:
    """Sky-subtracted Poisson realisation of ``image`` after ``years`` of LSST, nanomaggies, float32."""
    gain = np.array([photometry.electrons_per_nanomaggy(b, years) for b in bands])[:, None, None]
    sky = np.array([photometry.sky_electrons_per_pixel(b, years) for b in bands])[:, None, None]
    electrons = rng.poisson(np.clip(image, 0.0, None) * gain + sky) - sky
    return (electrons / gain).astype(np.float32)


def _draw_redshift(rng: np.random.Generator, z_min: float, z_max: float) -> float:
    """One redshift from ``p(z) ~ z^2 exp(-(z / z0)^1.5)``, ``z0 = 0.4 z_max``, truncated to [z_min, z_max)."""
    grid = np.linspace(z_min, z_max, 2049)
    density = grid**2 * np.exp(-((grid / (0.4 * z_max)) ** 1.5))
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]))])
    return float(np.interp(rng.uniform(0.0, cdf[-1]), cdf, grid))


def _orientation(rng: np.random.Generator, q_min: float) -> dict[str, Any]:
    import galsim

    return {"q": rng.uniform(q_min, 1.0), "beta": rng.uniform(0.0, np.pi) * galsim.radians}


def _photoz_galaxy(task: tuple[int, int, dict[str, Any]]) -> tuple[np.ndarray, float, float, int]:
    seed, index, cfg = task
    rng = np.random.default_rng([seed, index])
    templates = cfg["templates"]
    fractions = np.array([_TEMPLATE_FRACTIONS[photometry.TEMPLATES.index(t)] for t in templates])
    choice = int(rng.choice(len(templates), p=fractions / fractions.sum()))
    kind = photometry.TEMPLATES.index(templates[choice])
    z = _draw_redshift(rng, *cfg["z_range"])
    ebv = float(min(rng.exponential(cfg["ebv_scale"]), 5.0 * cfg["ebv_scale"]))
    absolute_mag = rng.normal(*_ABSOLUTE_MAG_I[kind])
    magnitudes = photometry.apparent_magnitudes(templates[choice], z, absolute_mag, PHOTOZ_BANDS, ebv=ebv)

    median_kpc, sigma_dex = _RADIUS_KPC[kind]
    radius_kpc = median_kpc * 10.0 ** rng.normal(0.0, sigma_dex)
    radius = radius_kpc / (1e3 * photometry.angular_diameter_distance(z)) * ARCSEC_PER_RADIAN
    stamp_arcsec = cfg["size"] * photometry.PIXEL_SCALE
    radius = float(np.clip(radius, 0.15, stamp_arcsec / 6.0))
    profile = _sersic(rng.uniform(*_SERSIC_INDEX[kind]), radius).shear(**_orientation(rng, 0.3))
    profile = profile.shift(*rng.normal(0.0, 0.5 * photometry.PIXEL_SCALE, size=2))
    psf = _psf(rng.uniform(*cfg["seeing_range"]))
    image = _render([_Component(profile, magnitudes)], psf, cfg["size"])
    return _observe(image, PHOTOZ_BANDS, cfg["depth_years"], rng), ebv, z, kind


def _morphology_galaxy(task: tuple[int, int, dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, int]:
    import galsim

    seed, index, cfg = task
    rng = np.random.default_rng([seed, index])
    label = int(rng.integers(len(MORPHOLOGY_CLASSES)))
    z = cfg["redshift"]

    def colours(template: str) -> np.ndarray:  # magnitudes relative to r
        mags = photometry.ab_magnitudes(template, z, MORPHOLOGY_BANDS)
        return mags - mags[MORPHOLOGY_BANDS.index("r")]

    total_r = rng.uniform(*cfg["r_mag_range"])
    radius = float(np.exp(rng.normal(np.log(cfg["median_radius"]), 0.25)))
    radius = min(radius, cfg["size"] * photometry.PIXEL_SCALE / 6.0)  # the galaxy fits the stamp
    components: list[_Component] = []
    if label == 0:  # spiral: exponential disc, small de Vaucouleurs bulge, star-forming knots
        shape = _orientation(rng, 0.25)
        bulge_fraction, knot_fraction = rng.uniform(0.05, 0.3), rng.uniform(0.2, 0.4)
        disc_fraction = 1.0 - bulge_fraction - knot_fraction
        knots = galsim.RandomKnots(
            int(rng.integers(30, 80)), half_light_radius=radius, rng=galsim.BaseDeviate(int(rng.integers(1, 2**31)))
        )
        components += [
            _Component(_sersic(1.0, radius).shear(**shape), total_r + colours("Sbc") - 2.5 * np.log10(disc_fraction)),
            _Component(knots.shear(**shape), total_r + colours("Im") - 2.5 * np.log10(knot_fraction)),
            _Component(_sersic(4.0, 0.3 * radius), total_r + colours("E") - 2.5 * np.log10(bulge_fraction)),
        ]
    elif label == 1:  # elliptical: one red de Vaucouleurs-like spheroid
        components.append(
            _Component(_sersic(rng.uniform(3.0, 5.5), 0.8 * radius).shear(**_orientation(rng, 0.5)), total_r + colours("E"))
        )
    else:  # merger: two galaxies at a few radii and a faint elongated tidal tail
        secondary = rng.uniform(0.3, 1.0)  # flux ratio secondary / primary
        tail = rng.uniform(0.1, 0.2)  # tidal tail flux / total
        fractions = np.array([1.0, secondary]) * (1.0 - tail) / (1.0 + secondary)
        angle = rng.uniform(0.0, 2.0 * np.pi)
        separation = rng.uniform(1.0, 2.5) * radius
        offset = 0.5 * separation * np.array([np.cos(angle), np.sin(angle)])
        for sign, fraction in zip((1.0, -1.0), fractions):
            template = "E" if rng.uniform() < 0.5 else "Sbc"
            body = _sersic(rng.uniform(1.0, 4.0), radius * np.sqrt(fraction / fractions[0]))
            body = body.shear(**_orientation(rng, 0.4)).shift(*(sign * offset))
            components.append(_Component(body, total_r + colours(template) - 2.5 * np.log10(fraction)))
        tail_angle = angle + rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.8)
        tail_shape = galsim.Shear(q=0.15, beta=tail_angle * galsim.radians)
        tail_profile = _sersic(0.5, 1.5 * radius).shear(tail_shape).shift(*(1.5 * offset))
        components.append(_Component(tail_profile, total_r + colours("Sbc") - 2.5 * np.log10(tail)))

    psf = _psf(rng.uniform(*cfg["seeing_range"]))
    image = _render(components, psf, cfg["size"])
    y10 = _observe(image, MORPHOLOGY_BANDS, 10.0, rng)
    y1 = _observe(image, MORPHOLOGY_BANDS, 1.0, rng)
    return y10, y1, label


def _default_workers(n: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, n // 256))


def _map_galaxies(worker: Callable, n: int, seed: int, cfg: dict[str, Any], n_workers: int | None) -> list:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    workers = _default_workers(n) if n_workers is None else int(n_workers)
    if workers < 1:
        raise ValueError(f"n_workers must be at least 1, got {n_workers}")
    tasks = [(int(seed), index, cfg) for index in range(n)]
    if workers == 1:
        return [worker(task) for task in tasks]
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        return list(pool.map(worker, tasks, chunksize=max(1, n // (8 * workers))))


def _check_range(name: str, value: Sequence[float], lowest: float) -> tuple[float, float]:
    low, high = (float(v) for v in value)
    if not lowest <= low < high:
        raise ValueError(f"{name} must be (low, high) with {lowest} <= low < high, got {tuple(value)}")
    return low, high


def simulate_photoz(
    n: int,
    *,
    seed: int,
    z_range: Sequence[float] = (0.02, 1.0),
    templates: Sequence[str] = photometry.TEMPLATES,
    depth_years: float = 10.0,
    ebv_scale: float = 0.03,
    seeing_range: Sequence[float] = (0.6, 0.9),
    size: int = 64,
    n_workers: int | None = None,
) -> dict[str, np.ndarray]:
    """Simulate ``n`` photo-z cutouts in LSST u, g, r, i, z.

    Each galaxy draws a redshift (``p(z) ~ z^2 exp(-(z / 0.4 z_max)^1.5)`` on ``z_range``), a CWW
    template (E 25%, Sbc 30%, Scd 25%, Im 20%), a rest-frame i absolute magnitude, a Galactic E(B-V)
    (exponential of mean ``ebv_scale``, capped at 5x), a Sersic profile (index by type, physical
    half-light radius by type turned into arcsec with the angular-diameter distance, clipped to
    [0.15 arcsec, a sixth of the stamp]), a random ellipticity, a sub-pixel offset and a seeing.

    Args:
        n: number of galaxies.
        seed: non-negative integer; equal seeds give bit-identical outputs.
        z_range: ``(z_min, z_max)`` of the redshifts (Campagne 2021: within [0, 1); Pasquet et al. 2019: [0, 0.4)).
        templates: subset of ``("E", "Sbc", "Scd", "Im")`` to draw from (fractions renormalised).
        depth_years: LSST exposure in years (10: full depth).
        ebv_scale: mean E(B-V) in magnitudes.
        seeing_range: uniform range of the atmospheric FWHM in arcsec.
        size: cutout side in pixels.
        n_workers: processes; default: one per core for large ``n`` (1 below 512 galaxies).

    Returns:
        ``images`` (n, 5, size, size) float32 in nanomaggies per pixel, bands u, g, r, i, z;
        ``ebv`` (n,) float32; ``z_spec`` (n,) float32; ``sed_type`` (n,) int64, an index into
        :data:`advrobust.data.photometry.TEMPLATES`.

    Raises:
        ValueError: a bad ``n``, ``seed``, range or template name.

    Example:
        >>> data = simulate_photoz(8, seed=0)
        >>> data["images"].shape, data["z_spec"].shape
        ((8, 5, 64, 64), (8,))
    """
    unknown = [t for t in templates if t not in photometry.TEMPLATES]
    if unknown or not templates:
        raise ValueError(f"templates must be a non-empty subset of {photometry.TEMPLATES}, got {tuple(templates)}")
    if ebv_scale <= 0:
        raise ValueError(f"ebv_scale must be positive, got {ebv_scale}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    cfg = {
        "z_range": _check_range("z_range", z_range, 1e-4),
        "templates": tuple(templates),
        "depth_years": float(depth_years),
        "ebv_scale": float(ebv_scale),
        "seeing_range": _check_range("seeing_range", seeing_range, 0.05),
        "size": int(size),
    }
    photometry.exposure_time("r", depth_years)  # validates depth_years
    results = _map_galaxies(_photoz_galaxy, n, seed, cfg, n_workers)
    images, ebv, z, kind = zip(*results)
    return {
        "images": np.stack(images),
        "ebv": np.asarray(ebv, dtype=np.float32),
        "z_spec": np.asarray(z, dtype=np.float32),
        "sed_type": np.asarray(kind, dtype=np.int64),
    }


def simulate_morphology(
    n: int,
    *,
    seed: int,
    redshift: float = 0.1,
    r_mag_range: Sequence[float] = (18.0, 21.0),
    median_radius: float = 1.5,
    seeing_range: Sequence[float] = (0.6, 0.9),
    size: int = 100,
    preprocess: bool = False,
    n_workers: int | None = None,
) -> dict[str, np.ndarray]:
    """Simulate ``n`` galaxy-morphology cutouts in LSST g, r, i at two depths, as in Ćiprijanović et al. (2022).

    Classes (``labels``): 0 spiral (exponential disc + de Vaucouleurs bulge + star-forming knots,
    Sbc / E / Im colours), 1 elliptical (Sersic n in [3, 5.5], E colours), 2 merger (two Sersic
    galaxies one to 2.5 radii apart and a faint elongated tidal tail). Classes are equally likely.
    Every galaxy is observed twice from the same noiseless image: Y10 (ten years of LSST, low noise)
    and Y1 (one year: ten times less exposure, so the sky noise is sqrt(10) times larger in flux units).

    Args:
        n: number of galaxies.
        seed: non-negative integer; equal seeds give bit-identical outputs.
        redshift: common redshift of the colours (Ćiprijanović et al. 2022 move all galaxies to one
            effective redshift).
        r_mag_range: uniform range of the total r magnitude (AB).
        median_radius: median half-light radius in arcsec (log-normal, 0.25 in ln), at most a sixth
            of the stamp (``size * 0.2 / 6`` arcsec); each galaxy's radius is capped there too, so
            the rendering's memory stays bounded by the stamp.
        seeing_range: uniform range of the atmospheric FWHM in arcsec.
        size: cutout side in pixels (100).
        preprocess: apply Ćiprijanović et al. (2022)'s percentile clipping and arcsinh stretch
            (:func:`advrobust.data.preprocess.asinh_stretch`) to both depths.
        n_workers: processes; default: one per core for large ``n`` (1 below 512 galaxies).

    Returns:
        ``images_y10``, ``images_y1`` (n, 3, size, size) float32, bands g, r, i, in nanomaggies per
        pixel (or stretched to [0, 1] with ``preprocess``); ``labels`` (n,) int64.

    Raises:
        ValueError: a bad ``n``, ``seed`` or range.
    """
    if not redshift > 0:
        raise ValueError(f"redshift must be positive, got {redshift}")
    if not median_radius > 0:
        raise ValueError(f"median_radius must be positive, got {median_radius}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    stamp_arcsec = int(size) * photometry.PIXEL_SCALE
    if median_radius > stamp_arcsec / 6.0:
        raise ValueError(f"median_radius = {median_radius} arcsec cannot be drawn in a {size}-pixel stamp "
                         f"({stamp_arcsec:g} arcsec): at most a sixth of the stamp, {stamp_arcsec / 6.0:g} arcsec "
                         "(each galaxy's radius is also capped there); use a larger size")
    cfg = {
        "redshift": float(redshift),
        "r_mag_range": _check_range("r_mag_range", r_mag_range, -50.0),
        "median_radius": float(median_radius),
        "seeing_range": _check_range("seeing_range", seeing_range, 0.05),
        "size": int(size),
    }
    results = _map_galaxies(_morphology_galaxy, n, seed, cfg, n_workers)
    y10, y1, labels = zip(*results)
    data = {"images_y10": np.stack(y10), "images_y1": np.stack(y1), "labels": np.asarray(labels, dtype=np.int64)}
    if preprocess:
        data["images_y10"] = asinh_stretch(data["images_y10"])
        data["images_y1"] = asinh_stretch(data["images_y1"])
    return data
