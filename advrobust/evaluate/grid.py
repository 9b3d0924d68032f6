"""The evaluation grid: every model against every attack or perturbation, in batches.

One pass over the data per model: the clean predictions (the ``natural`` column) and, for each
attack, the adversarial batch through the attack contract (``atk.run(x, y, *extra)`` when the
attack has it, for ``success`` and, for the one-pixel attack, ``iterations``; else
``atk(x, y, *extra)``) and the model's predictions on it. Metrics accumulate in the classes of
:mod:`advrobust.metrics` (reduced across ``torch.distributed`` ranks when a process group is up,
so each rank can evaluate its own shard). Latent-space distances clean vs perturbed come from
``model.features`` when the model has it (:class:`~advrobust.models.LatentModel`).

An attack is given as a *factory* ``model -> attack``, so one spec serves every model, e.g.
``{"FGSM": lambda m: FGSM(m, eps=0.01)}``; natural perturbations (no model) through
:func:`natural`, e.g. ``natural(gaussian_noise, sigma=1e-3)`` or
``natural(shorter_exposure, sky=sky, exposure_ratio=0.1)`` (the Y1 noise of Ciprijanovic et al. 2022).

Success rule when the attack has no ``run`` (natural perturbations): classifiers, the prediction
differs from ``y``; photo-z, ``|dz| > 0.05`` -- the objective of :mod:`advrobust.attacks.losses`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np
import torch
from torch import Tensor, nn

from advrobust import redshift
from advrobust.checks import check_model_inputs, check_number, model_device
from advrobust.evaluate.batch import attack_batch, predict
from advrobust.metrics import (
    AttackAccumulator, ClassificationAccumulator, LatentDistanceAccumulator, PhotozAccumulator,
)

__all__ = ["NATURAL", "natural", "evaluate_grid", "GridResult"]

#: name of the clean (unperturbed) column
NATURAL = "natural"

AttackFactory = Callable[[nn.Module], Callable[..., Tensor]]


def natural(fn: Callable[..., Tensor], *, seed: int = 0, **kwargs: Any) -> AttackFactory:
    """An attack factory for a natural perturbation ``fn(x, **kwargs, generator=g)`` (no model).

    Each model gets a fresh generator seeded with ``seed`` (on the data's device), so every model
    sees the same noise draws, batch after batch.

    Example:
        >>> attacks = {"Y1 noise": natural(shorter_exposure, sky=sky, exposure_ratio=0.1)}
    """
    def factory(model: nn.Module) -> Callable[..., Tensor]:
        state: Dict[str, torch.Generator] = {}

        def perturb(x: Tensor, y: Optional[Tensor] = None, *extra: Tensor) -> Tensor:
            if "g" not in state:
                state["g"] = torch.Generator(device=x.device).manual_seed(int(seed))
            return fn(x, **kwargs, generator=state["g"])

        perturb.__name__ = getattr(fn, "__name__", "perturbation")
        return perturb

    return factory


@dataclass
class GridResult:
    """Scores of every (model, attack) pair.

    Attributes:
        task: ``"classifier"`` or ``"photoz"``.
        scores: ``scores[model][attack]`` -> dict: the task metrics (classifier: ``accuracy``,
            ``precision``, ``recall``, ``f1``, ``confusion``...; photo-z: ``bias``, ``sigma_mad``,
            ``eta``), and for attacks ``success_rate`` (plus one-pixel iteration statistics under
            ``iterations``) and ``latent`` (distance median / mean / sem) when available.
            ``scores[model]["natural"]`` holds the clean metrics.
        distances: ``distances[model][attack]`` -> ``(N,)`` latent distances (``keep_distances=True``).
        predictions: ``predictions[model][column]`` -> ``(N,)`` predicted class (int64) or z_phot
            (float64), ``natural`` included (``keep_predictions=True``).
        seconds: ``seconds[model][attack]`` wall time of the attack plus scoring (``natural``: clean pass).
    """

    task: str
    scores: Dict[str, Dict[str, Dict[str, Any]]] = field(default_factory=dict)
    distances: Dict[str, Dict[str, np.ndarray]] = field(default_factory=dict)
    predictions: Dict[str, Dict[str, np.ndarray]] = field(default_factory=dict)
    seconds: Dict[str, Dict[str, float]] = field(default_factory=dict)

    def columns(self) -> list:
        """Column names (``natural`` first, then the attacks in the order given)."""
        return list(next(iter(self.scores.values()))) if self.scores else []

    def cells(self, value: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
        """``{model: {column: cell}}`` for a report table: ``value`` (default ``accuracy``) for
        classifiers; ``{"bias", "sigma_mad", "eta"}`` dicts for photo-z (``value`` picks one)."""
        out = {}
        for model, row in self.scores.items():
            if self.task == "photoz" and value is None:
                out[model] = {c: {k: s[k] for k in ("bias", "sigma_mad", "eta")} for c, s in row.items()}
            else:
                out[model] = {c: s[value or "accuracy"] for c, s in row.items()}
        return out


def _slices(n: int, batch_size: int):
    for i in range(0, n, batch_size):
        yield slice(i, min(i + batch_size, n))


def evaluate_grid(models: Mapping[str, nn.Module], attacks: Mapping[str, AttackFactory], x: Tensor, y: Tensor,
                  *extra: Tensor, task: str = "classifier", n_classes: Optional[int] = None,
                  batch_size: int = 128, latent: bool = True, keep_distances: bool = False,
                  keep_predictions: bool = False, outlier_threshold: float = 0.05,
                  progress: bool = False) -> GridResult:
    """Run every model against every attack, batch by batch, and score the results.

    Args:
        models: ``{name: model}``; each is called as ``model(x, *extra)``.
        attacks: ``{name: factory}``, ``factory(model)`` -> an attack (``atk(x, y, *extra)`` -> x_adv,
            optionally ``atk.run``), see the module docstring and :func:`natural`.
        x: ``(N, C, H, W)`` inputs in image units (any device: batches go to each model's device).
        y: ``(N,)`` int64 labels (classifier) or spectroscopic redshifts (photo-z).
        extra: further ``(N, ...)`` model inputs (e.g. E(B-V)), not perturbed.
        task: ``"classifier"`` or ``"photoz"`` (the photo-z models need a ``bin_centres`` buffer).
        n_classes: classifier classes (default: each model's ``n_outputs``, else its output width).
        batch_size: images per attack batch.
        latent: compute latent distances clean vs perturbed where the model has ``features``.
        keep_distances: also return every latent distance (for histograms and the JS distance).
        keep_predictions: also return every prediction (class or z_phot), clean and perturbed.
        outlier_threshold: photo-z ``|dz|`` outlier threshold (Campagne 2021: 0.05).
        progress: a progress bar over the batches of every model (images per second).

    Returns:
        :class:`GridResult`.

    Raises:
        ValueError: unknown task, empty models, the ``natural`` name used for an attack, bad shapes.

    Example:
        >>> res = evaluate_grid({"ConvNet": net}, {"FGSM": lambda m: FGSM(m, eps=0.01),
        ...                      "one-pixel": lambda m: OnePixel(m, max_iter=80)}, x, y, n_classes=3)
        >>> res.scores["ConvNet"]["FGSM"]["accuracy"]
    """
    if task not in ("classifier", "photoz"):
        raise ValueError(f"evaluate_grid: task must be 'classifier' or 'photoz', got {task!r}")
    if not models:
        raise ValueError("evaluate_grid: give at least one model")
    if NATURAL in attacks:
        raise ValueError(f"evaluate_grid: {NATURAL!r} is the clean column; name the attack otherwise")
    batch_size = int(check_number("evaluate_grid", "batch_size", batch_size, integer=True, positive=True))
    if y.shape[0] != x.shape[0] or any(e.shape[0] != x.shape[0] for e in extra):
        raise ValueError("evaluate_grid: y and extra must have x's batch size")
    result = GridResult(task=task)
    for mname, model in models.items():
        dev = model_device(model) or x.device
        check_model_inputs(f"evaluate_grid[{mname}]", model, x[:1].to(dev), y[:1].to(dev),
                           [e[:1].to(dev) for e in extra])
        k = n_classes or getattr(model, "n_outputs", None)
        has_latent = latent and callable(getattr(model, "features", None))

        kept: Dict[str, list] = {}

        def score(acc, logits, yb, column):
            pred = redshift.z_phot(logits, model.bin_centres) if task == "photoz" else logits.argmax(1)
            if task == "photoz":
                acc.update(pred, yb)  # (z_phot, z_spec)
            else:
                acc.update(yb, pred)  # (y_true, y_pred)
            if keep_predictions:
                kept.setdefault(column, []).append(pred.detach().cpu())

        def task_metric():
            if task == "photoz":
                return PhotozAccumulator(outlier_threshold)
            return ClassificationAccumulator(int(k))

        if task == "classifier" and k is None:
            k = predict(model, x[:1].to(dev), tuple(e[:1].to(dev) for e in extra), latent=False)[0].shape[1]
        names = [NATURAL] + list(attacks)
        metric = {a: task_metric() for a in names}
        success = {a: AttackAccumulator() for a in attacks}
        dist = {a: LatentDistanceAccumulator() for a in attacks}
        seconds = {a: 0.0 for a in names}
        instances = {a: factory(model) for a, factory in attacks.items()}
        for a, atk in instances.items():
            success[a].max_iter = getattr(atk, "max_iter", None)

        batches = _slices(x.shape[0], batch_size)
        if progress:
            from tqdm.auto import tqdm
            batches = tqdm(list(batches), desc=f"{mname}: {len(attacks)} perturbations", unit="batch",
                           leave=False, dynamic_ncols=True)
        for sl in batches:
            xb, yb = x[sl].to(dev), y[sl].to(dev)
            eb = tuple(e[sl].to(dev) for e in extra)
            t0 = time.perf_counter()
            logits, feats = predict(model, xb, eb, latent=latent)
            score(metric[NATURAL], logits, yb, NATURAL)
            seconds[NATURAL] += time.perf_counter() - t0
            for a, atk in instances.items():
                t0 = time.perf_counter()
                out = attack_batch(model, atk, xb, yb, eb, task=task, latent=latent,
                                   outlier_threshold=outlier_threshold)
                score(metric[a], out.logits, yb, a)
                success[a].update(out.success, out.iterations)
                if feats is not None:
                    dist[a].update(feats, out.features)
                seconds[a] += time.perf_counter() - t0
        row: Dict[str, Dict[str, Any]] = {NATURAL: metric[NATURAL].compute()}
        result.distances[mname] = {}
        for a in attacks:
            cell = dict(metric[a].compute())
            s = success[a].compute()
            cell["success_rate"] = s["success_rate"]
            if "n_success" in s:
                cell["iterations"] = {key: v for key, v in s.items() if key not in ("n", "success_rate")}
            if has_latent:
                cell["latent"] = dist[a].compute()
                if keep_distances:
                    result.distances[mname][a] = dist[a].distances()
            row[a] = cell
        result.scores[mname] = row
        if keep_predictions:
            result.predictions[mname] = {
                c: torch.cat(v).numpy().astype(np.float64 if task == "photoz" else np.int64) for c, v in kept.items()}
        result.seconds[mname] = seconds
    return result
