"""Transfer (black-box) evaluation: adversarial samples crafted on one model, scored on several.

Campagne (2021, Table 1) crafts FGSM/PGD samples on its reference Inception model and scores them
on four twins and on a different CNN; :func:`transfer_evaluate` does that in one call, for any
attack (every :class:`~advrobust.attacks.Attack` returns the adversarial tensor when called).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from advrobust import redshift
from advrobust.modes import eval_mode
from advrobust.checks import check_finite_output, check_model_inputs, check_number
from advrobust.metrics import photoz_metrics

__all__ = ["TransferResult", "transfer_evaluate"]


@dataclass
class TransferResult:
    """Adversarial samples and, per scored model, a dict of scores.

    Classifiers: ``clean_accuracy``, ``adv_accuracy``, ``flip_rate`` (prediction changed).
    Photo-z: ``clean_bias``, ``clean_sigma_mad``, ``clean_eta``, the same with ``adv_``, and
    ``mean_abs_shift`` (mean ``|z_phot(x_adv) - z_phot(x)|``).
    """

    x_adv: Tensor
    scores: Dict[str, Dict[str, float]] = field(default_factory=dict)

    def table(self) -> str:
        """The scores as a Markdown table, one row per model."""
        if not self.scores:
            return ""
        cols = list(next(iter(self.scores.values())))
        lines = ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for name, s in self.scores.items():
            lines.append(f"| {name} | " + " | ".join(f"{s[c]:.4g}" for c in cols) + " |")
        return "\n".join(lines)


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor, extra, batch_size: int) -> Tensor:
    outs = []
    with eval_mode(model):
        for i in range(0, x.shape[0], batch_size):
            outs.append(model(x[i:i + batch_size], *(e[i:i + batch_size] for e in extra)))
            check_finite_output(f"transfer_evaluate: {type(model).__name__}", outs[-1])
    return torch.cat(outs)


def _z_phot(model: nn.Module, logits: Tensor) -> Tensor:
    centres = getattr(model, "bin_centres", None)
    if not isinstance(centres, Tensor):
        raise ValueError(f"transfer_evaluate: task='photoz' needs models with a `bin_centres` buffer; "
                         f"{type(model).__name__} has none")
    return redshift.z_phot(logits, centres)


def transfer_evaluate(attack: Optional[Callable], x: Tensor, y: Tensor, targets: Union[Mapping[str, nn.Module],
                      Sequence[nn.Module]], *extra: Tensor, task: str = "classifier",
                      x_adv: Optional[Tensor] = None, batch_size: int = 256) -> TransferResult:
    """Craft adversarial samples with ``attack`` and score them on every model of ``targets``.

    Args:
        attack: an attack instance (e.g. ``PGD(source_model, eps=0.01)``) or any callable
            ``(x, y, *extra) -> x_adv`` tensor; ``None`` when ``x_adv`` is given.
        x: ``(B, ...)`` clean inputs; y: ``(B,)`` labels (classifier) or spectroscopic
            redshifts (photo-z); extra: further model inputs (e.g. E(B-V)), not perturbed.
        targets: ``{name: model}`` (or a sequence, named ``model0``, ``model1``, ...). Include
            the source model to see the white-box effect next to the transferred one.
        task: ``"classifier"`` or ``"photoz"`` (metrics of :mod:`advrobust.metrics`).
        x_adv: precomputed adversarial samples instead of running ``attack``.
        batch_size: inference batch size.

    Returns:
        :class:`TransferResult` with ``x_adv`` and ``scores[name]``.

    Example:
        >>> res = transfer_evaluate(FGSM(iref, eps=0.01, loss="photoz_ce"), images, z_spec,
        ...                         {"Iref": iref, "I0": i0, "CNN": cnn}, ebv, task="photoz")
        >>> print(res.table())
    """
    if task not in ("classifier", "photoz"):
        raise ValueError(f"transfer_evaluate: task must be 'classifier' or 'photoz', got {task!r}")
    if not isinstance(targets, Mapping):
        targets = {f"model{i}": m for i, m in enumerate(targets)}
    if not targets:
        raise ValueError("transfer_evaluate: give at least one target model")
    batch_size = int(check_number("transfer_evaluate", "batch_size", batch_size, integer=True, positive=True))
    for name, m in targets.items():
        check_model_inputs(f"transfer_evaluate[{name}]", m, x, y, extra)
    if x_adv is None:
        if attack is None:
            raise ValueError("transfer_evaluate: give an attack or precomputed x_adv")
        x_adv = attack(x, y, *extra)
    if not isinstance(x_adv, Tensor) or x_adv.shape != x.shape:
        raise ValueError(f"transfer_evaluate: x_adv must have x's shape {tuple(x.shape)}, got "
                         f"{tuple(x_adv.shape) if isinstance(x_adv, Tensor) else type(x_adv).__name__}")
    for name, m in targets.items():  # device, dtype and NaN of x_adv (precomputed, or from a user callable)
        check_model_inputs(f"transfer_evaluate[{name}] (x_adv)", m, x_adv, y, extra)
    result = TransferResult(x_adv=x_adv.detach())
    for name, model in targets.items():
        clean = _predict(model, x, extra, batch_size)
        adv = _predict(model, x_adv, extra, batch_size)
        if task == "classifier":
            pc, pa = clean.argmax(1), adv.argmax(1)
            result.scores[name] = {
                "clean_accuracy": float((pc == y).float().mean()),
                "adv_accuracy": float((pa == y).float().mean()),
                "flip_rate": float((pa != pc).float().mean()),
            }
        else:
            zc, za = _z_phot(model, clean), _z_phot(model, adv)
            mc, ma = photoz_metrics(zc, y), photoz_metrics(za, y)
            s = {f"clean_{k}": v for k, v in mc.items()}
            s.update({f"adv_{k}": v for k, v in ma.items()})
            s["mean_abs_shift"] = float((za - zc).abs().mean())
            result.scores[name] = s
    return result
