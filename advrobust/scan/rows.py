"""One chunk of a survey scan: the model's clean prediction and, for each named attack, its
prediction on the perturbed images, one row per object.

Attacks target the model's own clean prediction (no labels are needed): the classifier's predicted
class, or the photo-z model's ``z_phot``; so the measured quantity is *flipped* (the prediction
differs from the clean one), not *misclassified* (it differs from a label), which needs labels
(``advrobust attack --target``). Columns, for the attack names of
:data:`advrobust.attacks.by_name.ATTACK_NAMES` (``<a>``):

| column | classifier | photo-z |
|---|---|---|
| ``id`` | the object's id (catalogue, else its row number) | same |
| clean | ``class``, ``prob`` (its softmax probability) | ``z_phot`` |
| ``<a>_...`` | ``<a>_class``, ``<a>_prob`` | ``<a>_z_phot``, ``<a>_dz`` = ``(z_a - z_phot) / (1 + z_phot)`` |
| ``<a>_flipped`` | the predicted class differs from the clean one | ``|<a>_dz| > settings.threshold`` (clean vs attacked) |
| ``<a>_latent_distance`` | Euclidean distance of the latent vectors, clean vs perturbed | same |
| ``<a>_success`` | the attack's own verdict (the one-pixel attack's search; else as ``<a>_flipped``) | same |
| ``<a>_iterations`` | one-pixel only: DE generations run (``generations`` when it failed; see ``<a>_success``) | same |
| ``pit``, ``crps`` | - | with ``z_spec``: the clean p.d.f.'s PIT and CRPS (:func:`advrobust.metrics.pdf_columns`) |
| ``<a>_pit``, ``<a>_crps`` | - | with ``z_spec``: the same of the perturbed p.d.f. |
| ``<a>_eps`` | the radius used: image units, or units of ``settings.unit`` (per band, e.g. sky sigmas; ``AttackSpec.radius``: pgd_l2's L2 radius, none for one-pixel) | same |
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from advrobust import redshift
from advrobust.attacks.by_name import ATTACK_SPECS, AttackSettings, attack_by_name, check_attack_names
from advrobust.checks import Bound
from advrobust.evaluate.batch import attack_batch, predict
from advrobust.metrics.pdf import pdf_columns

__all__ = ["scan_rows"]


def scan_rows(model: nn.Module, images: Tensor, extra: Sequence[Tensor], ids: np.ndarray, *, task: str,
              attacks: Sequence[str], settings: AttackSettings, seed: int, batch_size: int = 256,
              lo: Bound = None, hi: Bound = None, pixel_lo: Bound = None,
              pixel_hi: Bound = None, z_spec: Optional[Tensor] = None,
              on_pdf: Optional[Callable[[str, Tensor], None]] = None) -> Mapping[str, np.ndarray]:
    """The rows of one chunk.

    Args:
        model: the model (eval mode is used; its mode is restored).
        images: ``(n, C, H, W)`` float32 on the model's device, image units.
        extra: further model inputs ``(n, ...)`` (photo-z: E(B-V)).
        ids: ``(n,)`` object ids.
        task: ``"classifier"`` or ``"photoz"``.
        attacks: names from :data:`~advrobust.attacks.by_name.ATTACK_NAMES`.
        settings: the attacks' settings.
        seed: the chunk's seed (:func:`advrobust.scan.chunk_seed`): every random draw of the chunk
            comes from it, so the rows do not depend on the ranks or on restarts.
        batch_size: images per attack batch.
        lo, hi, pixel_lo, pixel_hi: valid range and one-pixel value range (see
            :func:`~advrobust.attacks.by_name.attack_by_name`).
        z_spec: ``(n,)`` true redshifts (photo-z): adds the ``pit`` / ``crps`` columns.
        on_pdf: photo-z: called as ``on_pdf(column, pdf)`` with each batch's ``(B, bins)`` p.d.f.s, in
            order, ``column`` being ``"clean"`` or the attack's name (e.g. to write qp files).

    Returns:
        ``{column: (n,) array}`` (see the module docstring).
    """
    n = images.shape[0]
    columns: dict[str, list] = {}

    def put(name: str, values) -> None:
        columns.setdefault(name, []).append(np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values))

    generator = torch.Generator(device=images.device).manual_seed(int(seed))
    attacks = check_attack_names(attacks)
    built = {name: attack_by_name(name, model, settings, task=task, image_shape=tuple(images.shape[1:]),
                                  generator=generator, seed=int(seed), lo=lo, hi=hi,
                                  pixel_lo=pixel_lo, pixel_hi=pixel_hi) for name in attacks}
    eps_used = {name: ATTACK_SPECS[name].radius(settings, tuple(images.shape[1:])) for name in attacks
                if ATTACK_SPECS[name].radius is not None}
    for start in range(0, n, batch_size):
        xb = images[start:start + batch_size]
        eb = tuple(e[start:start + batch_size] for e in extra)
        logits, features = predict(model, xb, eb)
        if task == "photoz":
            z_clean = redshift.z_phot(logits, model.bin_centres)
            target = z_clean
            put("z_phot", z_clean)
            _pdf_outputs(model, logits, None if z_spec is None else z_spec[start:start + batch_size], "", put, on_pdf)
        else:
            probs = logits.softmax(1)
            target = probs.argmax(1)
            put("class", target)
            put("prob", probs.gather(1, target[:, None])[:, 0])
        for name, attack in built.items():
            out = attack_batch(model, attack, xb, target, eb, task=task, outlier_threshold=settings.threshold)
            if task == "photoz":
                z_adv = redshift.z_phot(out.logits, model.bin_centres)
                put(f"{name}_z_phot", z_adv)
                dz = redshift.delta_z(z_adv, z_clean)
                put(f"{name}_dz", dz)
                put(f"{name}_flipped", dz.abs() > settings.threshold)
                _pdf_outputs(model, out.logits, None if z_spec is None else z_spec[start:start + batch_size],
                             name, put, on_pdf)
            else:
                probs_adv = out.logits.softmax(1)
                cls = probs_adv.argmax(1)
                put(f"{name}_class", cls)
                put(f"{name}_prob", probs_adv.gather(1, cls[:, None])[:, 0])
                put(f"{name}_flipped", cls != target)
            if features is not None and out.features is not None:
                put(f"{name}_latent_distance", (out.features - features).flatten(1).norm(dim=1))
            put(f"{name}_success", out.success)
            if out.iterations is not None:
                put(f"{name}_iterations", out.iterations)
            if name in eps_used:
                put(f"{name}_eps", np.full(xb.shape[0], eps_used[name], dtype=np.float64))
    rows = {"id": np.asarray(ids)}
    rows.update({name: np.concatenate(parts) for name, parts in columns.items()})
    return rows


def _pdf_outputs(model: nn.Module, logits: Tensor, z_spec: Optional[Tensor], name: str, put,
                 on_pdf: Optional[Callable[[str, Tensor], None]]) -> None:
    """The p.d.f. of a photo-z batch: its ``[<name>_]pit`` / ``crps`` columns (with ``z_spec``) and
    ``on_pdf(name or "clean", pdf)``."""
    if z_spec is None and on_pdf is None:
        return
    pdf = torch.softmax(logits.detach(), dim=1)
    if z_spec is not None:
        prefix = f"{name}_" if name else ""
        for column, values in pdf_columns(pdf, z_spec, model.bin_edges).items():
            put(prefix + column, values)
    if on_pdf is not None:
        on_pdf(name or "clean", pdf)
