"""What ``advrobust attack`` measured, named: *flipped* and *misclassified*, and the report's figures.

* **flipped**: the attacked prediction differs from the clean prediction (classifier: another
  class; photo-z: ``|z_attacked - z_clean| / (1 + z_clean)`` above the outlier threshold). Needs no
  labels.
* **misclassified** (classifier, with ``--target``): the prediction differs from the label; its
  ``natural`` value is the clean error rate. A photo-z model's counterpart is ``eta``, the share
  with ``|dz|`` above the threshold against the spectroscopic redshift.

Without labels the attacks aim at the clean predictions, and the two are the same thing: only
flipped is stated.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence

import numpy as np

#: the figure's strengths, as multiples of the run's eps
CURVE_SCALES = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
#: objects the strength curve is measured on (the first of the attacked ones)
CURVE_OBJECTS = 512


def flipped(predictions: Mapping[str, np.ndarray], column: str, *, task: str, threshold: float) -> np.ndarray:
    """``(N,)`` bool: the prediction of ``column`` differs from the clean one (``predictions["natural"]``;
    classes, or z_phot compared by ``|dz| > threshold``)."""
    from advrobust import redshift

    clean, predicted = np.asarray(predictions["natural"]), np.asarray(predictions[column])
    if task == "photoz":
        return np.abs(redshift.delta_z(predicted.astype(np.float64), clean.astype(np.float64))) > threshold
    return predicted != clean


def outcomes(predictions: Mapping[str, np.ndarray], truth: Optional[np.ndarray], *, task: str,
             threshold: float) -> Dict[str, Dict[str, float]]:
    """``{column: {"flipped": share, "misclassified": share}}`` for ``natural`` and each attack
    column of ``predictions`` (``{column: (N,)}`` classes or z_phot, ``natural`` the clean ones);
    ``misclassified`` only for a classifier with ``truth`` (``(N,)`` labels)."""
    rates: Dict[str, Dict[str, float]] = {}
    for column, predicted in predictions.items():
        rates[column] = {"flipped": float(flipped(predictions, column, task=task, threshold=threshold).mean())}
        if task != "photoz" and truth is not None:
            rates[column]["misclassified"] = float((np.asarray(predicted) != np.asarray(truth)).mean())
    return rates


def outcome_table(rates: Mapping[str, Mapping[str, float]], label: str, attacks: Sequence[str], task: str,
                  threshold: float):
    """The report's table of the named quantities (rows), clean and under each attack (columns)."""
    from advrobust.report import ReportTable

    columns = ["natural"] + list(attacks)
    if task == "photoz":
        rows = {f"flipped: |dz| clean vs attacked > {threshold:g}": {c: rates[c]["flipped"] for c in columns}}
        note = ("dz = (z_attacked - z_clean) / (1 + z_clean); against the spectroscopic redshift see eta above. "
                f"Model: {label}.")
    else:
        rows = {"flipped: prediction differs from the clean one": {c: rates[c]["flipped"] for c in columns}}
        if "misclassified" in rates["natural"]:
            rows["misclassified: prediction differs from the label"] = {c: rates[c]["misclassified"]
                                                                        for c in columns}
            note = f"Model: {label}; labels from --target."
        else:
            note = (f"Model: {label}; no --target: the attacks aim at the clean predictions, so misclassified "
                    "(against a label) is not measured.")
    return ReportTable("Flipped and misclassified", rows, columns, note=note)


def curve_attack(attacks: Sequence[str]) -> Optional[str]:
    """The attack of the strength curve: fgsm when run (one gradient a strength), else the first
    with a radius (None: only the one-pixel attack, whose strength is a pixel count)."""
    from advrobust.attacks.by_name import ATTACK_SPECS

    with_radius = [a for a in attacks if ATTACK_SPECS[a].radius is not None]
    return "fgsm" if "fgsm" in with_radius else (with_radius[0] if with_radius else None)


def perturbation_figures(images: np.ndarray, adversarial: Mapping[str, np.ndarray], flipped_by,
                         unit_name: str, count: int = 3) -> dict:
    """``{caption: Figure}``: :func:`advrobust.plots.plot_perturbation` of ``count`` objects under
    the first attack of ``adversarial`` (``{attack: (N, C, H, W)}``) that moves pixels, the flipped
    objects first (``flipped_by(attack)``: ``(N,)`` bool)."""
    from advrobust.plots.photoz import plot_perturbation

    for name, x_adv in adversarial.items():
        delta = np.abs(x_adv - images).reshape(len(images), -1).max(axis=1)
        if np.any(delta > 0):
            break
    else:
        return {}
    flipped = np.asarray(flipped_by(name), dtype=bool)
    order = np.lexsort((np.arange(len(images)), ~flipped, delta == 0))[:count]
    figures = {}
    for i in order:
        span = float(np.ptp(images[i])) or 1.0
        magnify = max(1.0, round(0.5 * span / max(float(delta[i]), 1e-30)))
        state = "flipped" if flipped[i] else "not flipped"
        figures[f"{name} on object {i} ({state}): clean, perturbation x{magnify:g}, attacked ({unit_name})"] = \
            plot_perturbation(images[i], x_adv[i], magnify=magnify, unit=unit_name)
    return figures


def strength_curve(model, images, extra, truth, settings, *, task: str, device, seed: int, batch_size: int,
                   attack: str):
    """``(strengths, values, what, n)``: accuracy (classifier) or sigma_MAD (photo-z) of ``model``
    under ``attack`` at :data:`CURVE_SCALES` x ``settings.eps`` (in the units of ``settings``), on
    the first ``n`` = min(N, :data:`CURVE_OBJECTS`) objects (``images`` ``(N, C, H, W)`` tensor,
    ``truth`` ``(N,)`` labels or redshifts, ``extra`` further model inputs)."""
    import dataclasses

    import torch

    from advrobust.attacks.by_name import attack_by_name
    from advrobust.evaluate import evaluate_grid

    n = min(len(images), CURVE_OBJECTS)
    factories = {}
    for scale in CURVE_SCALES[1:]:
        scaled = dataclasses.replace(settings, eps=settings.eps * scale)
        generator = torch.Generator(device=device).manual_seed(int(seed))
        factories[f"x{scale:g}"] = (lambda s, g: lambda m: attack_by_name(
            attack, m, s, task=task, image_shape=tuple(images.shape[1:]), generator=g,
            seed=int(seed)))(scaled, generator)
    result = evaluate_grid({"model": model}, factories, images[:n], truth[:n], *(e[:n] for e in extra), task=task,
                           batch_size=batch_size, latent=False)
    key, what = ("sigma_mad", "sigma_MAD") if task == "photoz" else ("accuracy", "accuracy")
    scores = result.scores["model"]
    values = [scores["natural"][key]] + [scores[f"x{s:g}"][key] for s in CURVE_SCALES[1:]]
    return [settings.eps * s for s in CURVE_SCALES], values, what, n


def plot_strength_curve(strengths, values, what: str, *, attack: str, unit_label: str):
    """Figure: ``what`` against the attack's radius."""
    from advrobust.plots.base import new_figure

    fig, axes = new_figure((4.8, 3.4))
    ax = axes[0, 0]
    ax.plot(strengths, values, "o-")
    ax.set_xlabel(f"{attack} radius eps [{unit_label}]")
    ax.set_ylabel(what)
    ax.grid(alpha=0.3)
    return fig
