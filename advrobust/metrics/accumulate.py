"""Accumulating metrics: ``update`` batch by batch, ``compute`` once, ``reset`` to reuse.

The torchmetrics pattern without the dependency. A metric declares its state with
:meth:`Metric.add_state` as either

* ``"sum"``: a tensor of fixed shape, added up over updates and across ranks, or
* ``"cat"``: a list of ``(n_i, ...)`` tensors, concatenated over updates and across ranks
  (ranks may hold different numbers of rows).

States are tensors on the metric's device: the device given to the constructor or
:meth:`Metric.to`, else the device of the first value added. ``update`` runs on that device
without a host sync (shapes are checked there, values are not: the functional metric checks them
in ``compute``). :meth:`Metric.compute` is the one synchronisation point: it reduces the state
across the ranks of the default ``torch.distributed`` process group when one is initialised with
more than one rank (every rank must call ``compute``: it is a collective; with NCCL the states
travel through the current CUDA device), moves it to the host and applies the functional metric
of :mod:`advrobust.metrics`. The local state is left as it was, so ``update`` can go on afterwards.

Example:
    >>> acc = ClassificationAccumulator(n_classes=3)
    >>> for x, y in loader:
    ...     acc.update(y, model(x).argmax(1))
    >>> acc.compute()["f1"]
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from advrobust.checks import check_number
from advrobust.metrics.attacks import iterations_summary
from advrobust.metrics.certified import certified_counts
from advrobust.metrics.classification import confusion_counts, metrics_from_confusion
from advrobust.metrics.helpers import ArrayLike, as_rows
from advrobust.metrics.latent import Latents, distance_summary, latent_distance_rows
from advrobust.metrics.photoz import photoz_metrics

__all__ = ["Metric", "PhotozAccumulator", "ClassificationAccumulator", "LatentDistanceAccumulator",
           "AttackAccumulator", "CertifiedAccumulator"]

Device = Union[str, torch.device]


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_reduce_sum(t: Tensor) -> Tensor:
    out = t.to(_collective_device()).clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def _all_gather_cat(t: Tensor) -> Tensor:
    """Concatenate every rank's ``(n_rank, ...)`` tensor along dim 0, in rank order."""
    dev = _collective_device()
    world = dist.get_world_size()
    n = torch.tensor([t.shape[0]], dtype=torch.int64, device=dev)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    sizes = [int(s.item()) for s in sizes]
    padded = torch.zeros((max(sizes),) + tuple(t.shape[1:]), dtype=t.dtype, device=dev)
    padded[: t.shape[0]] = t.to(dev)
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class Metric:
    """Base of the accumulating metrics: state registry, ``update`` / ``compute`` / ``reset``, reduction.

    A subclass calls :meth:`add_state` in ``__init__``, implements ``update(...)`` (adding tensors,
    on any device, with :meth:`_add`) and ``_compute(state)`` (the metric from the reduced state on
    the host: sum states as tensors, cat states as one concatenated tensor each).

    Args:
        sync: reduce across ``torch.distributed`` ranks in :meth:`compute` when a process group
            with more than one rank is initialised (default True).
        device: where the states live (default: the device of the first value added).
    """

    def __init__(self, *, sync: bool = True, device: Optional[Device] = None) -> None:
        self.sync = bool(sync)
        self.device: Optional[torch.device] = None if device is None else torch.device(device)
        self._kinds: Dict[str, str] = {}
        self._defaults: Dict[str, Tensor] = {}
        self._state: Dict[str, Union[Tensor, List[Tensor]]] = {}

    def add_state(self, name: str, kind: str, default: Optional[Tensor] = None, *,
                  trailing_shape: Sequence[int] = (), dtype: torch.dtype = torch.float64) -> None:
        """Declare a state: ``kind="sum"`` with a ``default`` tensor, or ``kind="cat"`` with the
        trailing shape and dtype of its rows (used when a rank holds no row)."""
        if kind == "sum":
            if not isinstance(default, Tensor):
                raise TypeError(f"{type(self).__name__}.add_state: a 'sum' state needs a default tensor")
            self._defaults[name] = default.detach().cpu().clone()
        elif kind == "cat":
            self._defaults[name] = torch.empty((0,) + tuple(trailing_shape), dtype=dtype)
        else:
            raise ValueError(f"{type(self).__name__}.add_state: kind must be 'sum' or 'cat', got {kind!r}")
        self._kinds[name] = kind
        self._reset_state(name)

    def _default(self, name: str) -> Tensor:
        # non_blocking: the host default outlives the copy, so a copy to a GPU need not wait for it
        return self._defaults[name].to(self.device or "cpu", copy=True, non_blocking=True)

    def _reset_state(self, name: str) -> None:
        self._state[name] = self._default(name) if self._kinds[name] == "sum" else []

    def reset(self) -> None:
        """Forget every update (the device stays)."""
        for name in self._kinds:
            self._reset_state(name)

    def to(self, device: Device) -> "Metric":
        """Move the states to ``device`` (later updates are moved there too); returns ``self``."""
        self.device = torch.device(device)
        to_host = self.device.type == "cpu"  # a copy to the host must complete before it is read
        for name, s in self._state.items():
            self._state[name] = (s.to(self.device, non_blocking=not to_host) if isinstance(s, Tensor)
                                 else [t.to(self.device, non_blocking=not to_host) for t in s])
        return self

    def _add(self, name: str, value: Union[Tensor, np.ndarray]) -> None:
        """Add ``value`` to a sum state, or append its rows to a cat state, on the metric's device."""
        value = value if isinstance(value, Tensor) else torch.tensor(value)
        if self.device is None:
            self.to(value.device)
        value = value.detach().to(device=self.device, dtype=self._defaults[name].dtype)
        if self._kinds[name] == "sum":
            self._state[name] += value
        else:
            self._state[name].append(value.reshape((-1,) + tuple(self._defaults[name].shape[1:])))

    def local_state(self) -> Dict[str, Tensor]:
        """This rank's state on the metric's device, cat states concatenated (a copy)."""
        out = {}
        for name, kind in self._kinds.items():
            s = self._state[name]
            out[name] = s.clone() if kind == "sum" else torch.cat([self._default(name)] + s)
        return out

    def reduced_state(self) -> Dict[str, Tensor]:
        """The state over all ranks (a collective when distributed and ``sync``), else the local
        one, on the host: the one synchronisation point."""
        state = self.local_state()
        if self.sync and _distributed():
            state = {name: (_all_reduce_sum(t) if self._kinds[name] == "sum" else _all_gather_cat(t))
                     for name, t in state.items()}
        return {name: t.cpu() for name, t in state.items()}

    def compute(self):
        """The metric over every update (of every rank, see the class docstring)."""
        return self._compute(self.reduced_state())

    def _compute(self, state: Dict[str, Tensor]):
        raise NotImplementedError


class PhotozAccumulator(Metric):
    """Photo-z ``bias`` / ``sigma_mad`` / ``eta`` (:func:`~advrobust.metrics.photoz_metrics`) over batches.

    State: concatenated ``z_phot`` and ``z_spec`` (sigma_MAD is a median: no summed form).

    ``update(z_phot, z_spec)`` with ``(B,)`` tensors or arrays; ``compute()`` -> dict.
    """

    def __init__(self, outlier_threshold: float = 0.05, *, sync: bool = True, device: Optional[Device] = None) -> None:
        super().__init__(sync=sync, device=device)
        self.outlier_threshold = check_number("PhotozAccumulator", "outlier_threshold", outlier_threshold,
                                              positive=True)
        self.add_state("z_phot", "cat")
        self.add_state("z_spec", "cat")

    def update(self, z_phot: ArrayLike, z_spec: ArrayLike) -> None:
        zp, zs = as_rows(z_phot, "PhotozAccumulator: z_phot"), as_rows(z_spec, "PhotozAccumulator: z_spec")
        if zp.shape != zs.shape:
            raise ValueError(f"PhotozAccumulator.update: z_phot and z_spec lengths differ "
                             f"({zp.numel()} vs {zs.numel()})")
        self._add("z_phot", zp)
        self._add("z_spec", zs)

    def _compute(self, state):
        return photoz_metrics(state["z_phot"].numpy(), state["z_spec"].numpy(), self.outlier_threshold)


class ClassificationAccumulator(Metric):
    """Accuracy and weighted precision / recall / F1 (:func:`~advrobust.metrics.classification_metrics`).

    State: the summed ``(n_classes, n_classes)`` confusion matrix (:func:`~advrobust.metrics.confusion_counts`)
    and the count of labels outside ``[0, n_classes)`` (``compute`` raises if any). ``update(y_true, y_pred)``
    with ``(B,)`` integer tensors or arrays.
    """

    def __init__(self, n_classes: int, *, sync: bool = True, device: Optional[Device] = None) -> None:
        super().__init__(sync=sync, device=device)
        self.n_classes = int(n_classes)
        self.add_state("confusion", "sum", torch.zeros(self.n_classes, self.n_classes, dtype=torch.int64))
        self.add_state("outside", "sum", torch.zeros((), dtype=torch.int64))

    def update(self, y_true: ArrayLike, y_pred: ArrayLike) -> None:
        t = as_rows(y_true, "ClassificationAccumulator: y_true")
        p = as_rows(y_pred, "ClassificationAccumulator: y_pred")
        for what, v in (("y_true", t), ("y_pred", p)):
            if v.is_floating_point() or v.is_complex() or v.dtype == torch.bool:
                raise TypeError(f"ClassificationAccumulator.update: {what} must hold integer class indices, "
                                f"got dtype {v.dtype}")
        if t.shape != p.shape:
            raise ValueError(f"ClassificationAccumulator.update: y_true and y_pred lengths differ "
                             f"({t.numel()} vs {p.numel()})")
        counts, outside = confusion_counts(t, p.to(t.device), self.n_classes)
        self._add("confusion", counts)
        self._add("outside", outside)

    def _compute(self, state):
        if int(state["outside"]):
            raise ValueError(f"ClassificationAccumulator: {int(state['outside'])} labels have class indices "
                             f"outside [0, {self.n_classes})")
        return metrics_from_confusion(state["confusion"].numpy())


class LatentDistanceAccumulator(Metric):
    """Latent-space Euclidean distances clean vs perturbed (:func:`~advrobust.metrics.distance_summary`).

    State: the concatenated distances (:func:`~advrobust.metrics.latent_distance_rows`).
    ``update(clean, perturbed)`` with ``(B, D)`` latents; ``compute()`` -> ``{"median", "mean",
    "sem", "n"}``; :meth:`distances` -> all of them.
    """

    def __init__(self, *, sync: bool = True, device: Optional[Device] = None) -> None:
        super().__init__(sync=sync, device=device)
        self.add_state("distances", "cat")

    def update(self, clean: Latents, perturbed: Latents) -> None:
        self._add("distances", latent_distance_rows(clean, perturbed))

    def distances(self) -> np.ndarray:
        """Every distance (all ranks), float64 ``(N,)``; a collective when distributed."""
        return self.reduced_state()["distances"].numpy()

    def _compute(self, state):
        return distance_summary(state["distances"].numpy())


class AttackAccumulator(Metric):
    """Attack success rate and, for iterative searches, iterations-needed statistics.

    State: summed ``n`` and ``n_success``; concatenated ``iterations`` and ``success`` when
    iterations are given. ``update(success, iterations=None)``; ``compute()`` -> ``success_rate``
    and ``n`` plus, when iterations were given, :func:`~advrobust.metrics.iterations_summary`.
    """

    def __init__(self, max_iter: Optional[int] = None, *, sync: bool = True, device: Optional[Device] = None) -> None:
        super().__init__(sync=sync, device=device)
        self.max_iter = max_iter
        self.add_state("counts", "sum", torch.zeros(2, dtype=torch.int64))  # n, n_success
        self.add_state("iterations", "cat")
        self.add_state("success", "cat", dtype=torch.int64)

    def update(self, success: ArrayLike, iterations: Optional[ArrayLike] = None) -> None:
        s = as_rows(success, "AttackAccumulator: success", torch.int64)
        self._add("counts", torch.stack((s.new_full((), s.numel()), s.sum())))
        if iterations is not None:
            it = as_rows(iterations, "AttackAccumulator: iterations")
            if it.shape != s.shape:
                raise ValueError("AttackAccumulator.update: success and iterations lengths differ")
            self._add("iterations", it)
            self._add("success", s)

    def _compute(self, state):
        n, k = (int(v) for v in state["counts"])
        if n == 0:
            raise ValueError("AttackAccumulator.compute: no update yet")
        out = {"n": n, "success_rate": k / n}
        if state["iterations"].numel():
            out.update(iterations_summary(state["iterations"].numpy(), state["success"].numpy(), self.max_iter))
        return out


class CertifiedAccumulator(Metric):
    """Certified accuracy at fixed radii and the average certified radius, over batches.

    State: summed counts of correct-and-certified images per radius
    (:func:`~advrobust.metrics.certified_counts`), and the image count, the sum of the correct
    radii and the count of negative or non-finite radii (``compute`` raises if any).
    ``update(predictions, radii, labels)`` (-1 = abstain, radii in image units);
    ``compute()`` -> ``{"radii": (R,), "certified_accuracy": (R,), "acr": float, "n": int}``.
    """

    def __init__(self, radii: Sequence[float], *, sync: bool = True, device: Optional[Device] = None) -> None:
        super().__init__(sync=sync, device=device)
        self.radii = np.atleast_1d(np.asarray(radii, dtype=np.float64))
        self.add_state("correct_at", "sum", torch.zeros(self.radii.size, dtype=torch.int64))
        self.add_state("totals", "sum", torch.zeros(3, dtype=torch.float64))  # n, sum of correct radii, n bad radii
        self._at = torch.tensor(self.radii)  # on the device of the radii updated

    def update(self, predictions: ArrayLike, radii: ArrayLike, labels: ArrayLike) -> None:
        r = as_rows(radii, "CertifiedAccumulator: radii", torch.float64)
        p = as_rows(predictions, "CertifiedAccumulator: predictions").to(r.device)
        y = as_rows(labels, "CertifiedAccumulator: labels").to(r.device)
        if not (p.shape == r.shape == y.shape):
            raise ValueError(f"CertifiedAccumulator.update: predictions, radii and labels must have the same "
                             f"length, got {p.numel()}, {r.numel()}, {y.numel()}")
        if self._at.device != r.device:
            self._at = self._at.to(r.device, non_blocking=True)
        at_r, radius_sum = certified_counts(p, r, y, self._at)
        bad = ((r < 0) | ~torch.isfinite(r)).sum().to(r.dtype)
        self._add("correct_at", at_r)
        self._add("totals", torch.stack((r.new_full((), r.numel()), radius_sum, bad)))

    def _compute(self, state):
        n, s, bad = (float(v) for v in state["totals"])
        if bad:
            raise ValueError(f"CertifiedAccumulator: radii must be finite and >= 0, got {int(bad)} others")
        if n == 0:
            raise ValueError("CertifiedAccumulator.compute: no update yet")
        return {"radii": self.radii.copy(), "certified_accuracy": state["correct_at"].numpy() / n,
                "acr": s / n, "n": int(round(n))}
