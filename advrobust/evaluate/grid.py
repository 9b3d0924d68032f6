"""The evaluation grid: every model against every attack or perturbation, in batches.

One pass over the data per model: the clean predictions (the ``natural`` column) and, for each
attack, the adversarial batch through the attack contract (``atk.run(x, y, *extra)`` when the
attack has it, for ``success`` and, for the one-pixel attack, ``iterations``; else
``atk(x, y, *extra)``) and the model's predictions on it. Each (model, column) is one
:class:`GridCell` (``update`` per batch, ``compute`` once: the torchmetrics ``MetricCollection``
shape) over the accumulating metrics of :mod:`advrobust.metrics`, whose states stay on the model's
device until ``compute`` (reduced across ``torch.distributed`` ranks when a process group is up,
so each rank can evaluate its own shard). Latent-space distances clean vs perturbed come from
``model.features`` when the model has it (:class:`~advrobust.models.LatentModel`). The
adversarial images are scored and dropped; ``on_adversarial`` hands each batch of them to the
caller (e.g. to save them).

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
from typing import Any, Callable, Dict, List, Mapping, Optional

import numpy as np
import torch
from torch import Tensor, nn

from advrobust import redshift
from advrobust.checks import check_model_inputs, check_number, model_device
from advrobust.evaluate.batch import Outcome, attack_batch, predict
from advrobust.metrics import (
    AttackAccumulator, ClassificationAccumulator, LatentDistanceAccumulator, PhotozAccumulator,
)

__all__ = ["NATURAL", "natural", "evaluate_grid", "GridResult", "GridCell"]

#: name of the clean (unperturbed) column
NATURAL = "natural"

AttackFactory = Callable[[nn.Module], Callable[..., Tensor]]
#: ``on_adversarial(model_name, attack_name, x_adv)``: one call per batch, in order, ``x_adv`` on the model's device
AdversarialCallback = Callable[[str, str, Tensor], None]


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


class GridCell:
    """One (model, column) of the grid: ``update`` per batch, ``compute`` once.

    Holds the task metric (photo-z: :class:`~advrobust.metrics.PhotozAccumulator`; classifier:
    :class:`~advrobust.metrics.ClassificationAccumulator`) and, for an attack column, its success
    rate (:class:`~advrobust.metrics.AttackAccumulator`) and, where the model has latents, the
    latent distances clean vs perturbed (:class:`~advrobust.metrics.LatentDistanceAccumulator`).

    Args:
        task: ``"classifier"`` or ``"photoz"``.
        n_classes: classifier classes (ignored for photo-z).
        outlier_threshold: photo-z ``|dz|`` outlier threshold.
        attack: an attack column (else the clean one: no success rate, no distances).
        max_iter: the attack's iteration cap, reported with the one-pixel statistics.
        latent: score latent distances (the model has ``features``).
        keep_predictions: keep every prediction for :meth:`predictions`.
    """

    def __init__(self, task: str, n_classes: Optional[int] = None, *, outlier_threshold: float = 0.05,
                 attack: bool = False, max_iter: Optional[int] = None, latent: bool = False,
                 keep_predictions: bool = False) -> None:
        self.task = task
        self.metric = (PhotozAccumulator(outlier_threshold) if task == "photoz"
                       else ClassificationAccumulator(int(n_classes)))
        self.success = AttackAccumulator(max_iter) if attack else None
        self.latent = LatentDistanceAccumulator() if attack and latent else None
        self._kept: Optional[List[Tensor]] = [] if keep_predictions else None
        self.seconds = 0.0

    def update(self, pred: Tensor, y: Tensor, outcome: Optional[Outcome] = None,
               clean_features: Optional[Tensor] = None) -> None:
        """Score one batch: ``pred`` ``(B,)`` predicted classes or z_phot, ``y`` ``(B,)`` the truth;
        for an attack column its :class:`~advrobust.evaluate.Outcome` and the clean latents."""
        if self.task == "photoz":
            self.metric.update(pred, y)  # (z_phot, z_spec)
        else:
            self.metric.update(y, pred)  # (y_true, y_pred)
        if self._kept is not None:
            self._kept.append(pred.detach())
        if self.success is not None:
            self.success.update(outcome.success, outcome.iterations)
        if self.latent is not None:
            self.latent.update(clean_features, outcome.features)

    def compute(self) -> Dict[str, Any]:
        """The cell's scores (see :class:`GridResult` ``scores``)."""
        cell = dict(self.metric.compute())
        if self.success is not None:
            s = self.success.compute()
            cell["success_rate"] = s["success_rate"]
            if "n_success" in s:
                cell["iterations"] = {key: v for key, v in s.items() if key not in ("n", "success_rate")}
        if self.latent is not None:
            cell["latent"] = self.latent.compute()
        return cell

    def distances(self) -> np.ndarray:
        """Every latent distance, float64 ``(N,)`` (an attack column of a model with latents)."""
        return self.latent.distances()

    def predictions(self) -> np.ndarray:
        """Every prediction, ``(N,)``: int64 classes or float64 z_phot (``keep_predictions=True``)."""
        return torch.cat(self._kept).cpu().numpy().astype(np.float64 if self.task == "photoz" else np.int64)


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

    @classmethod
    def from_cells(cls, task: str, cells: Mapping[str, Mapping[str, GridCell]], *, keep_distances: bool = False,
                   keep_predictions: bool = False) -> "GridResult":
        """The result of ``cells[model][column]`` (each updated with every batch)."""
        return cls(
            task=task,
            scores={m: {c: cell.compute() for c, cell in row.items()} for m, row in cells.items()},
            distances={m: {c: cell.distances() for c, cell in row.items() if keep_distances and cell.latent is not None}
                       for m, row in cells.items()},
            predictions={m: {c: cell.predictions() for c, cell in row.items()}
                         for m, row in cells.items() if keep_predictions},
            seconds={m: {c: cell.seconds for c, cell in row.items()} for m, row in cells.items()})

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


@dataclass(frozen=True)
class _Options:
    """The per-call settings of :func:`evaluate_grid` that every model shares."""

    task: str
    n_classes: Optional[int]
    batch_size: int
    latent: bool
    keep_predictions: bool
    outlier_threshold: float
    progress: bool
    on_adversarial: Optional[AdversarialCallback]


def _prediction(model: nn.Module, logits: Tensor, task: str) -> Tensor:
    """``(B,)`` z_phot (photo-z models have ``bin_centres``) or predicted class."""
    return redshift.z_phot(logits, model.bin_centres) if task == "photoz" else logits.argmax(1)


def _model_cells(model: nn.Module, attacks: Mapping[str, Callable[..., Tensor]], x: Tensor, extra, dev,
                 opts: _Options) -> Dict[str, GridCell]:
    """One :class:`GridCell` per column for ``model``: ``natural`` first, then the attacks."""
    k = opts.n_classes or getattr(model, "n_outputs", None)
    if opts.task == "classifier" and k is None:
        k = predict(model, x[:1].to(dev), tuple(e[:1].to(dev) for e in extra), latent=False)[0].shape[1]
    has_latent = opts.latent and callable(getattr(model, "features", None))
    common = dict(outlier_threshold=opts.outlier_threshold, keep_predictions=opts.keep_predictions)
    cells = {NATURAL: GridCell(opts.task, k, **common)}
    for a, atk in attacks.items():
        cells[a] = GridCell(opts.task, k, attack=True, max_iter=getattr(atk, "max_iter", None), latent=has_latent,
                            **common)
    return cells


def _batches(n: int, opts: _Options, desc: str):
    """Row slices of ``batch_size`` (the last one shorter), under a progress bar when asked."""
    slices = [slice(i, min(i + opts.batch_size, n)) for i in range(0, n, opts.batch_size)]
    if not opts.progress:
        return slices
    from tqdm.auto import tqdm
    return tqdm(slices, desc=desc, unit="batch", leave=False, dynamic_ncols=True)


def _score_batch(mname: str, model: nn.Module, attacks: Mapping[str, Callable[..., Tensor]],
                 cells: Mapping[str, GridCell], xb: Tensor, yb: Tensor, eb: tuple, opts: _Options) -> None:
    """One batch through ``model``, clean and under every attack, into the cells."""
    t0 = time.perf_counter()
    logits, feats = predict(model, xb, eb, latent=opts.latent)
    cells[NATURAL].update(_prediction(model, logits, opts.task), yb)
    cells[NATURAL].seconds += time.perf_counter() - t0
    for a, atk in attacks.items():
        t0 = time.perf_counter()
        out = attack_batch(model, atk, xb, yb, eb, task=opts.task, latent=opts.latent,
                           outlier_threshold=opts.outlier_threshold)
        cells[a].update(_prediction(model, out.logits, opts.task), yb, out, feats)
        cells[a].seconds += time.perf_counter() - t0
        if opts.on_adversarial is not None:
            opts.on_adversarial(mname, a, out.x_adv)


def _evaluate_model(mname: str, model: nn.Module, factories: Mapping[str, AttackFactory], x: Tensor, y: Tensor,
                    extra: tuple, opts: _Options) -> Dict[str, GridCell]:
    """Every batch of ``x`` through one model: its cells, updated."""
    dev = model_device(model) or x.device
    check_model_inputs(f"evaluate_grid[{mname}]", model, x[:1].to(dev), y[:1].to(dev),
                       [e[:1].to(dev) for e in extra])
    attacks = {a: factory(model) for a, factory in factories.items()}
    cells = _model_cells(model, attacks, x, extra, dev, opts)
    for sl in _batches(x.shape[0], opts, f"{mname}: {len(attacks)} perturbations"):
        _score_batch(mname, model, attacks, cells, x[sl].to(dev), y[sl].to(dev), tuple(e[sl].to(dev) for e in extra),
                     opts)
    return cells


def evaluate_grid(models: Mapping[str, nn.Module], attacks: Mapping[str, AttackFactory], x: Tensor, y: Tensor,
                  *extra: Tensor, task: str = "classifier", n_classes: Optional[int] = None,
                  batch_size: int = 128, latent: bool = True, keep_distances: bool = False,
                  keep_predictions: bool = False, outlier_threshold: float = 0.05,
                  progress: bool = False, on_adversarial: Optional[AdversarialCallback] = None) -> GridResult:
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
        on_adversarial: ``on_adversarial(model_name, attack_name, x_adv)`` with every batch of
            adversarial images ``(B, C, H, W)`` (on the model's device), in order, model by model
            (the grid keeps none).

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
    opts = _Options(task, n_classes, batch_size, bool(latent), bool(keep_predictions), float(outlier_threshold),
                    bool(progress), on_adversarial)
    cells = {mname: _evaluate_model(mname, model, attacks, x, y, extra, opts) for mname, model in models.items()}
    return GridResult.from_cells(task, cells, keep_distances=keep_distances, keep_predictions=keep_predictions)
