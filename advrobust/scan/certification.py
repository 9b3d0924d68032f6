"""Certification columns of one chunk of objects, shared by ``advrobust certify`` (resumable modes)
and the scan's optional certification columns (``advrobust scan --certify-radii``).

* Classifiers: :meth:`advrobust.defenses.Smooth.certify_adaptive` (Cohen, Rosenfeld and Kolter 2019's
  guarantee, with a sequential number of draws) at the given L2 radii.
* Photo-z models: :meth:`advrobust.defenses.SmoothRegression.certify` (median smoothing, Chiang et
  al. 2020) at one L2 radius, with the certified non-outlier flag where ``z_spec`` is known.

Columns (each ``(n,)``, names after ``prefix``):

| column | classifier | photo-z |
|---|---|---|
| ``prediction`` | smoothed class, -1 abstain | |
| ``abstain`` | prediction == -1 | |
| ``certified_at_<r>`` | bool, certified at L2 radius r (image units, ``%g``) | |
| ``radius`` | the bound *at the stop* (see below) | |
| ``p_lower`` | lower bound on p_A at the stop | |
| ``median``, ``lo``, ``hi`` | | smoothed z_phot and its certified interval at the radius |
| ``non_outlier`` | | ``|dz| <= threshold`` over all of ``[lo, hi]`` (with ``z_spec`` only) |
| ``samples`` | model evaluations spent on the object | same (n for every object) |

The adaptive ``radius`` is the certified radius reached when the object stopped sampling (it stops as
soon as every asked radius is decided), not the largest radius it could certify with more draws:
certified accuracy comes from the ``certified_at_<r>`` columns; an average certified radius computed
from ``radius`` would be biased low.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from advrobust.checks import check_number

__all__ = ["CertifySettings", "certify_rows", "certified_column", "certified_accuracy_at", "scan_certify_seed"]


@dataclass(frozen=True)
class CertifySettings:
    """What to certify and how.

    Attributes:
        sigma: smoothing noise (image units).
        alpha: failure probability of each object's certificate.
        radii: classifier: the L2 radii (image units) decided by the adaptive test.
        n_max: classifier: the most draws per object.
        radius: photo-z: the L2 radius of the certified interval (image units).
        n: photo-z: draws per object.
        threshold: photo-z: outlier threshold on ``|dz|`` (Campagne 2021: 0.05).
        batch_size: noisy images per forward pass (it changes the noise stream, hence the rows).
    """

    sigma: float
    alpha: float = 0.001
    radii: Sequence[float] = field(default_factory=tuple)
    n_max: int = 100_000
    radius: Optional[float] = None
    n: int = 1000
    threshold: float = 0.05
    batch_size: int = 256

    def as_dict(self) -> dict:
        values = asdict(self)
        values["radii"] = [float(r) for r in self.radii]
        return values

    def check(self, task: str) -> None:
        """ValueError unless these settings certify a model of ``task`` (``"classifier"``: distinct radii
        >= 0 at ``%g`` precision; ``"photoz"``: a radius >= 0), naming the setting."""
        if task == "photoz":
            if self.radius is None or not np.isfinite(self.radius) or self.radius < 0:
                raise ValueError(f"a photo-z model is certified at one L2 radius >= 0: radius is {self.radius}")
        elif task == "classifier":
            names = [certified_column(r) for r in self.radii]
            if not names or len(set(names)) != len(names) or not all(np.isfinite(self.radii)) or min(self.radii) < 0:
                raise ValueError(f"a classifier is certified at distinct L2 radii >= 0 (at %g precision): radii are "
                                 f"{list(self.radii)}")
        else:
            raise ValueError(f"task must be 'classifier' or 'photoz', got {task!r}")


def scan_certify_seed(seed: int, chunk) -> int:
    """The seed of the smoothing noise of ``chunk`` in a scan: like :func:`advrobust.scan.chunk_seed`
    a function of the scan's seed and the chunk's index only, but another stream than the attacks'
    (whose noise would otherwise repeat the smoothing noise)."""
    return int(np.random.SeedSequence([int(seed), chunk.index, 1]).generate_state(1, np.uint64)[0] >> 1)


def certified_column(radius: float) -> str:
    """The name of the certified-at-``radius`` column: ``certified_at_<radius %g>``."""
    return f"certified_at_{float(radius):g}"


def certify_rows(model: nn.Module, images: Tensor, extra: Sequence[Tensor], *, task: str,
                 settings: CertifySettings, seed: int, z_spec: Optional[np.ndarray] = None,
                 prefix: str = "") -> Mapping[str, np.ndarray]:
    """The certification columns of one chunk (see the module docstring).

    Args:
        model: a classifier with ``n_outputs`` classes, or a :class:`~advrobust.models.PhotozModel`.
        images: ``(n, C, H, W)`` on the model's device (image units).
        extra: further model inputs (photo-z: E(B-V) ``(n,)``).
        task: ``"classifier"`` or ``"photoz"``.
        settings: :class:`CertifySettings`.
        seed: seeds the noise generator (on ``images``' device): the rows depend on it, the chunk and
            the settings only.
        z_spec: photo-z: true redshifts ``(n,)`` for the ``non_outlier`` column (None: no column).
        prefix: prepended to every column name.

    Raises:
        ValueError: settings that do not fit the task (:meth:`CertifySettings.check`) and the errors of
            the certifiers.
    """
    from advrobust.defenses import Smooth, SmoothRegression, certified_non_outlier

    settings.check(task)
    generator = torch.Generator(device=images.device).manual_seed(int(seed))
    s = settings
    if task == "photoz":
        cert = SmoothRegression(model, s.sigma).certify(images, s.radius, *extra, alpha=s.alpha, n=s.n,
                                                        batch_size=s.batch_size, generator=generator)
        cols = {"median": cert.median, "lo": cert.lo, "hi": cert.hi, "samples": cert.samples}
        if z_spec is not None:
            cols["non_outlier"] = certified_non_outlier(cert.lo, cert.hi, torch.as_tensor(z_spec), s.threshold)
    else:
        names = [certified_column(r) for r in s.radii]
        cert = Smooth(model, model.n_outputs, s.sigma).certify_adaptive(
            images, list(s.radii), alpha=s.alpha, n_max=s.n_max, batch_size=s.batch_size, generator=generator)
        cols = {"prediction": cert.prediction, "abstain": cert.prediction == Smooth.ABSTAIN,
                **{name: cert.certified[:, j] for j, name in enumerate(names)},
                "radius": cert.radius, "p_lower": cert.p_lower, "samples": cert.samples}
    return {prefix + name: np.asarray(values.cpu() if isinstance(values, Tensor) else values)
            for name, values in cols.items()}


def certified_accuracy_at(certified: np.ndarray, prediction: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Fraction of objects certified at each radius *and* correctly classified: float64 ``(R,)``
    from ``certified`` bool ``(B, R)``, ``prediction`` and ``labels`` ``(B,)``."""
    certified = np.asarray(certified, dtype=bool)
    prediction, labels = np.asarray(prediction), np.asarray(labels)
    if certified.ndim != 2 or certified.shape[0] != prediction.shape[0] or prediction.shape != labels.shape:
        raise ValueError(f"certified_accuracy_at: certified (B, R), prediction and labels (B,), got "
                         f"{certified.shape}, {prediction.shape}, {labels.shape}")
    check_number("certified_accuracy_at", "objects", certified.shape[0], integer=True, positive=True)
    return (certified & (prediction == labels)[:, None]).mean(0)
