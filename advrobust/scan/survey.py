"""The survey scan: a model and a survey in, one Parquet row per object out (:func:`scan_survey`).

Streams the survey chunk by chunk (memory constant in its size), writes each chunk's rows
(:func:`advrobust.scan.rows.scan_rows`) as an atomic part file, and assembles the catalogue at the
end (:mod:`advrobust.scan.parts`): killed at any moment and started again with the same settings, it
goes on where it stopped and every object is in the catalogue exactly once. Under ``torchrun`` the
chunks are shared among the ranks (chunk ``i`` to rank ``i % world_size``), each rank writes its own
parts and rank 0 writes the catalogue; every random draw of a chunk comes from a seed derived from the
scan's seed and the chunk's index, so the catalogue is the same for any number of ranks.
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from advrobust import distributed
from advrobust.attacks.by_name import AttackSettings, check_attack_names
from advrobust.checks import check_number, model_device
from advrobust.data.dataset import SurveyDataset
from advrobust.models.base import PhotozModel
from advrobust.scan.parts import PartStore, chunk_seed, chunks_for_rank, plan_chunks, run_chunks
from advrobust.scan.rows import scan_rows

__all__ = ["scan_survey"]


def scan_survey(model: nn.Module, dataset: SurveyDataset, out: str, *, attacks: Sequence[str],
                settings: AttackSettings, seed: int = 0, chunk_size: int = 256, batch_size: int = 128,
                lo: Optional[Sequence[float]] = None, hi: Optional[Sequence[float]] = None,
                pixel_lo: Optional[Sequence[float]] = None, pixel_hi: Optional[Sequence[float]] = None,
                ebv: str = "ebv", config: Optional[Mapping[str, Any]] = None, progress: bool = True) -> dict:
    """Scan ``dataset`` with ``model`` under ``attacks`` and write the catalogue ``out`` (Parquet).

    Args:
        model: a classifier, or a :class:`~advrobust.models.PhotozModel` (which takes E(B-V): the
            dataset must hold an ``ebv`` value, see ``ebv``).
        dataset: the survey (:func:`advrobust.data.load_survey`; images streamed from the file).
        out: the catalogue's path (``.parquet``); part files go to ``<out>.parts/``.
        attacks: names from :data:`~advrobust.attacks.by_name.ATTACK_NAMES`.
        settings: the attacks' settings (eps in image units, or in ``settings.unit``: one value per
            band, e.g. the sky sigma; the manifest records both, the rows' ``<a>_eps`` the eps).
        seed: the scan's seed.
        chunk_size: objects per part file (and per resume step).
        batch_size: images per attack batch.
        lo, hi: per-band valid range the gradient attacks clamp to (None: no clamp; clean images
            outside it are refused).
        pixel_lo, pixel_hi: per-band range of the one-pixel attack's values (default ``lo``/``hi``;
            None: each batch's range, which makes a row depend on its batch: give it).
        ebv: the dataset value holding E(B-V) (photo-z models).
        config: further settings that change the rows (e.g. the model file's checksum), stored in the
            manifest with these arguments; a restart with other values is refused.
        progress: progress bar (rank 0).

    Returns:
        ``{"out": path, "objects": N, "computed": objects computed by this process, "seconds": wall
        time, "resumed": bool}``.

    Raises:
        ValueError: unknown attack, a photo-z model without E(B-V), NaN pixels under ``nan_policy="raise"``.
        advrobust.scan.ScanConfigError: ``out`` belongs to a scan with other settings.
    """
    t0 = time.perf_counter()
    attacks = check_attack_names(attacks)
    chunk_size = int(check_number("scan_survey", "chunk_size", chunk_size, integer=True, positive=True))
    batch_size = int(check_number("scan_survey", "batch_size", batch_size, integer=True, positive=True))
    task = "photoz" if isinstance(model, PhotozModel) else "classifier"
    if task == "photoz" and ebv not in dataset.values:
        raise ValueError(f"a photo-z model needs E(B-V): the survey has no {ebv!r} value "
                         f"(values: {sorted(dataset.values) or 'none'})")
    device = model_device(model) or torch.device("cpu")
    to_band = (lambda v: None if v is None else torch.as_tensor(np.asarray(v, dtype=np.float32), device=device))
    store = PartStore(out)
    manifest = {
        "attacks": attacks, "settings": settings.as_dict(), "seed": int(seed), "chunk_size": chunk_size,
        "batch_size": batch_size, "objects": len(dataset), "image_shape": list(dataset.images.shape[1:]),
        "task": task, "device": device.type, "lo": None if lo is None else np.asarray(lo, float).tolist(),
        "hi": None if hi is None else np.asarray(hi, float).tolist(),
        "pixel_lo": None if pixel_lo is None else np.asarray(pixel_lo, float).tolist(),
        "pixel_hi": None if pixel_hi is None else np.asarray(pixel_hi, float).tolist(), **dict(config or {}),
    }
    if distributed.is_main():
        resumed = store.open(manifest, create=True)
    distributed.barrier()
    if not distributed.is_main():
        resumed = store.open(manifest, create=False)
    chunks = plan_chunks(len(dataset), chunk_size)
    mine = chunks_for_rank(chunks, distributed.rank(), distributed.world_size())

    def compute(chunk):
        rows = dataset.indices[chunk.start:chunk.stop]
        images = torch.from_numpy(dataset.read_images(chunk.start, chunk.stop)).to(device)
        extra = (torch.from_numpy(dataset.values[ebv][rows]).to(device),) if task == "photoz" else ()
        ids = dataset.ids[rows] if dataset.ids is not None else rows
        return scan_rows(model, images, extra, ids, task=task, attacks=attacks, settings=settings,
                         seed=chunk_seed(seed, chunk), batch_size=batch_size, lo=to_band(lo), hi=to_band(hi),
                         pixel_lo=to_band(pixel_lo), pixel_hi=to_band(pixel_hi))

    computed = run_chunks(store, mine, compute, progress=progress and distributed.is_main(),
                          desc=f"scan rank {distributed.rank()}" if distributed.is_distributed() else "scan")
    distributed.barrier()
    if distributed.is_main():
        store.assemble(chunks)
    distributed.barrier()
    return {"out": store.out, "objects": len(dataset), "computed": computed,
            "seconds": time.perf_counter() - t0, "resumed": resumed}
