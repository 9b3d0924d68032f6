"""One plain-PyTorch training loop with pluggable parts (:class:`Trainer`).

A step: move the batch to the device, apply the *batch transform* (where adversarial and noisy
training plug in: :mod:`advrobust.defenses`), zero the gradients, run the model, take the weighted
mean of the per-sample task loss, add every *extra loss* (MMD domain adaptation, the sensitivity
term), backward, optimiser step. Around it: Adam/AdamW, reduce-on-plateau, early stopping, seeds,
mixed precision on request, a progress bar, one checkpoint per epoch (written atomically; a killed
run resumes from it to the same weights bit for bit) and ``DistributedDataParallel`` under
``torchrun`` (:mod:`advrobust.distributed`).

Reproducibility: the epoch's sample order comes from ``seed + epoch`` (the sampler's own generator),
the transforms draw from :attr:`Trainer.generator` (seeded with ``seed``, on the device), and both it
and the global CPU (and CUDA) RNG states are saved in every checkpoint.
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, replace
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from advrobust import distributed
from advrobust.attacks.losses import LossFn, check_targets
from advrobust.checks import check_model, check_number, model_device, nonfinite_parameters
from advrobust.train.checkpoint import load_checkpoint, optimizer_from_flat, optimizer_to_flat, save_checkpoint
from advrobust.train.losses import task_loss

__all__ = ["Batch", "Trainer", "BatchTransform", "ExtraLoss"]


@dataclass
class Batch:
    """One mini-batch as the loss sees it.

    Attributes:
        x: ``(B, ...)`` images (image units, e.g. nanomaggies).
        y: ``(B,)`` labels or redshifts.
        extra: further model inputs (``model(x, *extra)``), e.g. E(B-V) ``(B,)``.
        weight: ``(B,)`` per-sample loss weights summing to 1, or None for the plain mean.
    """

    x: Tensor
    y: Tensor
    extra: Tuple[Tensor, ...] = ()
    weight: Optional[Tensor] = None

    def with_(self, **changes) -> "Batch":
        """A copy with some fields replaced."""
        return replace(self, **changes)


#: ``transform(trainer, batch) -> batch``: runs before the training forward, without gradients kept.
BatchTransform = Callable[["Trainer", Batch], Batch]
#: ``extra_loss(trainer, batch, output) -> scalar tensor`` added to the task loss.
ExtraLoss = Callable[["Trainer", Batch, Tensor], Tensor]


class Trainer:
    """Train ``model`` on a dataset of ``(x, y, *extra)`` tuples.

    Args:
        model: the network (``model(x, *extra) -> output``). A model with a ``head`` (every
            :class:`advrobust.models.LatentModel`) exposes the latent vectors of the step's forward as
            :attr:`latent` to the extra losses during :meth:`train_step` (called by :meth:`fit` or
            directly; what MMD domain adaptation uses); None outside a step.
        loss: per-sample task loss ``(output, y) -> (B,)`` or a name: ``"ce"`` (classes),
            ``"photoz_ce"`` (cross-entropy on the redshift bin, Campagne 2021), ``"photoz_dz"``;
            weighted classes: :class:`advrobust.train.WeightedCrossEntropy`.
        optimizer: ``"adam"`` or ``"adamw"``.
        lr: learning rate. weight_decay: L2 (Adam) or decoupled (AdamW) decay.
        adam_eps: Adam's epsilon (Campagne 2021 uses 0.1-1.0 for the Inception net; default 1e-8).
        batch_transform: a :data:`BatchTransform` (adversarial, mixed, noisy training), or None.
        extra_losses: :data:`ExtraLoss` terms (MMD, sensitivity).
        plateau_patience: epochs without improvement of the monitored loss (validation loss when a
            validation set is given, else the training loss) before the learning rate is multiplied
            by ``plateau_factor``; None: constant learning rate (unless ``one_cycle``).
        one_cycle: the one-cycle schedule (Smith and Topin 2019, ``torch.optim.lr_scheduler.OneCycleLR``):
            the learning rate rises from ``lr / 25`` to ``lr`` over the first 30% of the steps of
            :meth:`fit` and anneals to ``lr / 1e4`` by its last step (stepped per batch). Not with
            ``plateau_patience``.
        early_stopping: stop after this many epochs without improvement of the monitored loss; None: never.
        metric: ``"accuracy"``, ``"sigma_mad"`` (photo-z, needs the model's ``bin_centres``), a callable
            ``(outputs (N, ...), y (N,)) -> float`` or None; reported on the validation set.
            Default: accuracy for ``"ce"``, sigma_MAD for ``"photoz_ce"``, none otherwise.
        seed: seeds the global RNG (fresh runs), the sample order and :attr:`generator`.
        amp: mixed precision (autocast float16 with a gradient scaler on CUDA, bfloat16 on the CPU).
        progress: show a progress bar with the live loss (rank 0 only).
        checkpoint: path of the checkpoint file, written after every epoch (rank 0); None: none.
        device: where to train; default: the model's device.
        fields: for datasets whose items are dictionaries (:class:`advrobust.data.SurveyDataset`),
            the keys of ``x``, ``y`` and the extra inputs, e.g. ``("image", "z_spec", "ebv")``.

    Raises:
        ValueError, TypeError: an argument out of range or of the wrong kind, named in the message.
    """

    def __init__(self, model: nn.Module, loss: Union[str, LossFn] = "ce", *, optimizer: str = "adam",
                 lr: float = 1e-3, weight_decay: float = 0.0, adam_eps: float = 1e-8,
                 batch_transform: Optional[BatchTransform] = None, extra_losses: Sequence[ExtraLoss] = (),
                 plateau_patience: Optional[int] = None, plateau_factor: float = 0.1, one_cycle: bool = False,
                 early_stopping: Optional[int] = None, metric: Union[str, Callable, None] = "auto",
                 seed: int = 0, amp: bool = False, progress: bool = True,
                 checkpoint: Optional[Union[str, os.PathLike]] = None,
                 device: Optional[Union[str, torch.device]] = None,
                 fields: Optional[Sequence[str]] = None) -> None:
        check_model("Trainer", model)
        self.device = torch.device(device) if device is not None else (model_device(model) or torch.device("cpu"))
        self.module = model.to(self.device)
        self.loss_name = loss if isinstance(loss, str) else None
        self.loss_fn = task_loss(loss, model)
        self.optimizer, self.scheduler = _optimizer_and_plateau(model, optimizer, lr, weight_decay, adam_eps,
                                                                plateau_patience, plateau_factor)
        if one_cycle and plateau_patience is not None:
            raise ValueError("Trainer: one_cycle and plateau_patience are two learning-rate schedules; give one")
        self.one_cycle = bool(one_cycle)
        self.lr = float(lr)
        if early_stopping is not None:
            check_number("Trainer", "early_stopping", early_stopping, integer=True, positive=True)
        self.early_stopping = early_stopping
        if batch_transform is not None and not callable(batch_transform):
            raise TypeError(f"Trainer: batch_transform must be callable (trainer, batch) -> batch, got "
                            f"{type(batch_transform).__name__}")
        for hook in extra_losses:
            if not callable(hook):
                raise TypeError(f"Trainer: every extra loss must be callable (trainer, batch, output) -> "
                                f"scalar, got {type(hook).__name__}")
        self.batch_transform = batch_transform
        self.extra_losses = list(extra_losses)
        self.metric_name, self.metric_fn = self._resolve_metric(metric)
        self.seed = int(check_number("Trainer", "seed", seed, integer=True))
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed)
        self.amp = bool(amp)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp and self.device.type == "cuda" else None
        self.progress = bool(progress)
        self.checkpoint = None if checkpoint is None else os.fspath(checkpoint)
        self.history: List[dict] = []
        self.epoch = 0  # epochs completed
        self._best = math.inf
        self._bad_epochs = 0
        self.latent: Optional[Tensor] = None
        if fields is not None and (isinstance(fields, str) or len(fields) < 2):
            raise ValueError(f"Trainer: fields must name x, y and any extra inputs, e.g. ('image', 'z_spec', "
                             f"'ebv'), got {fields!r}")
        self.fields = None if fields is None else tuple(fields)
        self.model: nn.Module = model
        if distributed.is_distributed():
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(model, device_ids=ids)

    # -- parts ---------------------------------------------------------------------------------
    def _keep_latent(self, module, inputs):
        if module.training:
            self.latent = inputs[0]

    @contextlib.contextmanager
    def _latent_capture(self) -> Iterator[None]:
        """While open, a training forward of a model with a ``head`` module sets :attr:`latent` (the
        head's input); cleared on exit."""
        head = getattr(self.module, "head", None)
        hook = head.register_forward_pre_hook(self._keep_latent) if isinstance(head, nn.Module) else None
        try:
            yield
        finally:
            if hook is not None:
                hook.remove()
            self.latent = None

    def _resolve_metric(self, metric):
        if metric == "auto":
            metric = {"ce": "accuracy", "photoz_ce": "sigma_mad"}.get(self.loss_name)
        if metric is None:
            return None, None
        if metric == "accuracy":
            return metric, lambda out, y: float((out.argmax(1) == y).float().mean())
        if metric == "sigma_mad":
            centres = getattr(self.module, "bin_centres", None)
            if not isinstance(centres, Tensor):
                raise ValueError("Trainer: metric 'sigma_mad' needs a photo-z model with `bin_centres`")
            from advrobust import redshift
            from advrobust.metrics.photoz import sigma_mad

            def _sigma_mad(out, z):
                return sigma_mad(redshift.delta_z(redshift.z_phot(out, centres), z).cpu().numpy())
            return metric, _sigma_mad
        if callable(metric):
            return getattr(metric, "__name__", "metric"), metric
        raise ValueError(f"Trainer: metric must be 'accuracy', 'sigma_mad', a callable or None, got {metric!r}")

    def _autocast(self):
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.amp)

    def _batch(self, items) -> Batch:
        if isinstance(items, dict):
            if self.fields is None:
                raise TypeError(f"Trainer: the dataset's items are dictionaries (keys {sorted(items)}); pass "
                                "fields=(x key, y key, *extra keys), e.g. ('image', 'z_spec', 'ebv')")
            missing = [k for k in self.fields if k not in items]
            if missing:
                raise KeyError(f"Trainer: fields {missing} are not in the dataset's items (keys {sorted(items)})")
            items = [items[k] for k in self.fields]
        items = [t.to(self.device, non_blocking=True) for t in items]
        if len(items) < 2:
            raise ValueError(f"Trainer: a dataset item must be (x, y, *extra), got {len(items)} tensor(s)")
        return Batch(items[0], items[1], tuple(items[2:]))

    def batch_loss(self, batch: Batch, output: Tensor) -> Tensor:
        """Weighted mean of the per-sample task loss plus every extra loss (a scalar). The targets are
        checked as the attacks check them (labels in range, redshifts > -1, a warning for redshifts
        outside the model's bins)."""
        check_targets("Trainer", self.loss_fn, output, batch.y)
        per = self.loss_fn(output.float(), batch.y)
        loss = per.mean() if batch.weight is None else (per * batch.weight).sum()
        for hook in self.extra_losses:
            loss = loss + hook(self, batch, output)
        return loss

    def train_step(self, batch: Batch) -> float:
        """One optimiser step on ``batch`` (after the batch transform); returns the loss value."""
        self.module.train()
        if self.batch_transform is not None:
            batch = self.batch_transform(self, batch)
        self.optimizer.zero_grad(set_to_none=True)
        with self._latent_capture(), self._autocast():
            output = self.model(batch.x, *batch.extra)
            loss = self.batch_loss(batch, output)
        self._check_loss(loss)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return float(loss.detach())

    def _check_loss(self, loss: Tensor) -> None:
        """ValueError on a NaN/Inf loss: a broken model (NaN weights) or a diverged run is never
        stepped on nor saved (the checkpoint keeps the last finite epoch)."""
        if not bool(torch.isfinite(loss.detach())):
            bad = nonfinite_parameters(self.module)
            cause = (f"the model has NaN/Inf weights ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})"
                     if bad else "the model's output or the loss overflowed (lower the learning rate?)")
            raise ValueError(f"Trainer: the loss is {float(loss.detach())} at epoch {self.epoch + 1}: {cause}; "
                             "training stopped, nothing saved for this epoch")

    def _check_weights(self) -> None:
        """ValueError when a step left NaN/Inf weights (checked before every save)."""
        bad = nonfinite_parameters(self.module)
        if bad:
            raise ValueError(f"Trainer: epoch {self.epoch + 1} left NaN/Inf weights ({', '.join(bad[:3])}"
                             f"{', ...' if len(bad) > 3 else ''}); training stopped, nothing saved for this epoch")

    @torch.no_grad()
    def evaluate(self, data: Dataset, batch_size: int = 256) -> dict:
        """Mean task loss (and the metric) of the model in eval mode over ``data``."""
        self.module.eval()
        outs, ys, total, n = [], [], 0.0, 0
        for items in DataLoader(data, batch_size=batch_size, shuffle=False):
            b = self._batch(items)
            with self._autocast():
                out = self.module(b.x, *b.extra).float()
            total += float(self.loss_fn(out, b.y).sum())
            n += b.x.shape[0]
            outs.append(out)
            ys.append(b.y)
        result = {"loss": total / max(n, 1)}
        if self.metric_fn is not None and n:
            result[self.metric_name] = self.metric_fn(torch.cat(outs), torch.cat(ys))
        return result

    # -- checkpoints ---------------------------------------------------------------------------
    def state_tensors_and_meta(self) -> Tuple[dict, dict]:
        """Everything a resumed run needs: (tensors, JSON-able metadata)."""
        tensors = {f"model.{k}": v for k, v in self.module.state_dict().items()}
        opt_tensors, opt_rest = optimizer_to_flat(self.optimizer.state_dict())
        tensors.update({f"optim.{k}": v for k, v in opt_tensors.items()})
        tensors["rng.cpu"] = torch.get_rng_state()
        tensors["rng.generator"] = self.generator.get_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        meta = {"epoch": self.epoch, "optimizer": opt_rest, "history": self.history,
                "best": self._best, "bad_epochs": self._bad_epochs, "seed": self.seed,
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                "scaler": None if self.scaler is None else self.scaler.state_dict()}
        return tensors, meta

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the checkpoint (atomically) to ``path``."""
        save_checkpoint(path, *self.state_tensors_and_meta())

    def load(self, path: Union[str, os.PathLike]) -> None:
        """Restore model, optimiser, scheduler, RNG states, epoch and history from ``path``.

        Raises:
            ValueError: not a training checkpoint, or one of another model (missing/unexpected keys).
        """
        tensors, meta = load_checkpoint(path)
        model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        self.module.load_state_dict(model_state)
        opt = {k[6:]: v for k, v in tensors.items() if k.startswith("optim.")}
        self.optimizer.load_state_dict(optimizer_from_flat(opt, meta["optimizer"]))
        if self.scheduler is not None and meta["scheduler"] is not None:
            self.scheduler.load_state_dict(meta["scheduler"])
        if self.scaler is not None and meta["scaler"] is not None:
            self.scaler.load_state_dict(meta["scaler"])
        torch.set_rng_state(tensors["rng.cpu"])
        self.generator.set_state(tensors["rng.generator"])
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.epoch, self.history = int(meta["epoch"]), list(meta["history"])
        self._best, self._bad_epochs = float(meta["best"]), int(meta["bad_epochs"])

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, train: Dataset, epochs: int, *, batch_size: int = 64, val: Optional[Dataset] = None,
            resume: bool = True) -> List[dict]:
        """Train until ``epochs`` epochs are done (counting those of a resumed checkpoint) or early stop.

        Args:
            train: dataset of ``(x, y, *extra)`` tuples (e.g. a ``TensorDataset``).
            epochs: total number of epochs.
            batch_size: the global mini-batch; under torchrun each of the W processes takes
                ``batch_size / W`` samples of it (it must divide), so a step is the same step.
            val: validation dataset (monitored loss and metric), or None.
            resume: continue from :attr:`checkpoint` when that file exists.

        Returns:
            the history: one dict per epoch with ``epoch``, ``train_loss``, ``lr`` and the validation
            ``val_loss`` / metric.
        """
        check_number("Trainer.fit", "epochs", epochs, integer=True)
        check_number("Trainer.fit", "batch_size", batch_size, integer=True, positive=True)
        world, rank = distributed.world_size(), distributed.rank()
        if batch_size % world:
            raise ValueError(f"Trainer.fit: batch_size {batch_size} is not divisible by the {world} processes")
        sampler = DistributedSampler(train, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
        loader = DataLoader(train, batch_size=batch_size // world, sampler=sampler)
        total_steps = epochs * len(loader)
        if self.one_cycle and self.scheduler is None:
            self.scheduler = torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=self.lr,
                                                                 total_steps=max(total_steps, 1))
        if resume and self.checkpoint is not None and os.path.exists(self.checkpoint):
            self.load(self.checkpoint)
        elif self.epoch == 0:
            torch.manual_seed(self.seed)
        if self.one_cycle and self.scheduler.total_steps != max(total_steps, 1):
            raise ValueError(f"Trainer.fit: the one-cycle schedule covers {self.scheduler.total_steps} steps (fixed by "
                             f"the first fit or the checkpoint), but {epochs} epochs of {len(loader)} batches are "
                             f"{total_steps}: continuing a schedule needs the same epochs, batch size and data; "
                             "otherwise use a new Trainer (and checkpoint)")
        show = self.progress and distributed.is_main()
        self._epochs(loader, sampler, epochs, batch_size, val, show)
        return self.history

    def _epochs(self, loader, sampler, epochs: int, batch_size: int, val, show: bool) -> None:
        while self.epoch < epochs and not self._stopped():
            sampler.set_epoch(self.epoch)
            bar = _progress(loader, show, f"epoch {self.epoch + 1}/{epochs}")
            total, steps = 0.0, 0
            for items in bar:
                total += self.train_step(self._batch(items))
                steps += 1
                if self.one_cycle:
                    self.scheduler.step()
                if show:
                    bar.set_postfix(loss=f"{total / steps:.4g}")
            record = {"epoch": self.epoch + 1, "train_loss": total / max(steps, 1),
                      "lr": self.optimizer.param_groups[0]["lr"]}
            if val is not None:
                record.update({f"val_{k}": v for k, v in self.evaluate(val, batch_size).items()})
            if show:
                bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k != "epoch"})
                bar.close()
            self._check_weights()
            monitored = record.get("val_loss", record["train_loss"])
            if self.scheduler is not None and not self.one_cycle:
                self.scheduler.step(monitored)
            if monitored < self._best:
                self._best, self._bad_epochs = monitored, 0
            else:
                self._bad_epochs += 1
            self.history.append(record)
            self.epoch += 1
            if self.checkpoint is not None and distributed.is_main():
                self.save(self.checkpoint)
            distributed.barrier()

    def _stopped(self) -> bool:
        return self.early_stopping is not None and self._bad_epochs >= self.early_stopping


def _optimizer_and_plateau(model: nn.Module, optimizer: str, lr: float, weight_decay: float, adam_eps: float,
                           plateau_patience: Optional[int], plateau_factor: float):
    """The checked Adam/AdamW optimiser of ``model`` and its reduce-on-plateau schedule (None without
    ``plateau_patience``); see :class:`Trainer` for the arguments."""
    check_number("Trainer", "lr", lr, positive=True)
    check_number("Trainer", "weight_decay", weight_decay)
    check_number("Trainer", "adam_eps", adam_eps, positive=True)
    if optimizer not in ("adam", "adamw"):
        raise ValueError(f"Trainer: optimizer must be 'adam' or 'adamw', got {optimizer!r}")
    opt_cls = torch.optim.Adam if optimizer == "adam" else torch.optim.AdamW
    opt = opt_cls(model.parameters(), lr=lr, weight_decay=weight_decay, eps=adam_eps)
    if plateau_patience is None:
        return opt, None
    check_number("Trainer", "plateau_patience", plateau_patience, integer=True)
    check_number("Trainer", "plateau_factor", plateau_factor, positive=True)
    if not plateau_factor < 1:
        raise ValueError(f"Trainer: plateau_factor must be < 1, got {plateau_factor}")
    return opt, torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=plateau_factor, patience=int(plateau_patience))


def _progress(loader, show: bool, desc: str):
    if not show:
        return loader
    from tqdm.auto import tqdm
    return tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)
