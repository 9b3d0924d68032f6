"""The survey scan: a model and a survey in, one Parquet row per object out (:func:`scan_survey`).

Streams the survey chunk by chunk (memory constant in its size), writes each chunk's rows
(:func:`advrobust.scan.rows.scan_rows`) as an atomic part file, and assembles the catalogue at the
end (:mod:`advrobust.scan.parts`): killed at any moment and started again with the same settings, it
goes on where it stopped and every object is in the catalogue exactly once. Any number of processes
can run the same scan on the same ``out`` (on one machine or many sharing a file system; launched by
``torchrun``, SLURM, MPI or by hand): each claims the next chunk nobody holds, a dead process's
chunks are taken over once its claim expires, and one of them writes the catalogue once every part
exists. Every random draw of a chunk comes from a seed derived from the scan's seed and the chunk's
index, so the catalogue is the same for any number of processes, in any order, after any restarts.

Photo-z models: with ``z_spec`` the rows gain each p.d.f.'s PIT and CRPS; with ``qp=True`` every
chunk also writes its p.d.f.s as ``qp`` ensembles, one file per perturbation (``clean`` and each
attack): ``<out>.parts/qp/<column>-<chunk>.hdf5`` (:func:`advrobust.data.write_qp`, ids and z_spec in
the ancillary table). They are written, atomically, before the chunk's part, so every finished chunk
has its files, once each (a recomputed chunk rewrites the same files); memory stays one chunk's
p.d.f.s. ``qp.read`` reads each file; concatenate a column's files in chunk order for the catalogue.
"""
from __future__ import annotations

import os
import time
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from advrobust import distributed
from advrobust.attacks.by_name import AttackSettings, attack_by_name, check_attack_names
from advrobust.checks import check_number, model_device
from advrobust.data.dataset import SurveyDataset
from advrobust.models.base import PhotozModel
from advrobust.scan.certification import CertifySettings, certify_rows, scan_certify_seed
from advrobust.scan.parts import ChunkClaims, PartStore, assemble_once, chunk_seed, plan_chunks, run_chunks
from advrobust.scan.rows import scan_rows

__all__ = ["scan_survey", "qp_chunk_path"]


def scan_survey(model: nn.Module, dataset: SurveyDataset, out: str, *, attacks: Sequence[str],
                settings: AttackSettings, seed: int = 0, chunk_size: int = 256, batch_size: int = 128,
                lo: Optional[Sequence[float]] = None, hi: Optional[Sequence[float]] = None,
                pixel_lo: Optional[Sequence[float]] = None, pixel_hi: Optional[Sequence[float]] = None,
                ebv: str = "ebv", config: Optional[Mapping[str, Any]] = None, progress: bool = True,
                claim_timeout: float = 60.0, carry: Optional[Mapping[str, np.ndarray]] = None,
                hats: Optional[str] = None, certify: Optional[CertifySettings] = None,
                z_spec: Optional[str] = None, qp: bool = False) -> dict:
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
        claim_timeout: seconds after which the claim of a process on another machine that stopped
            touching it expires and its chunk is taken over (a dead process of this machine is seen
            at once); see :class:`~advrobust.scan.parts.ChunkClaims`.
        carry: columns copied into the catalogue as they are, ``{name: (N,) array}`` indexed like
            the survey's source rows (e.g. ``ra``, ``dec`` from its catalogue, at full precision).
        certify: also certify every object (slow: up to ``n_max`` / ``n`` forward passes per object):
            the columns of :func:`advrobust.scan.certification.certify_rows` prefixed ``certify_``
            (classifier: adaptive certified-at-r booleans at ``certify.radii``, samples; photo-z: the
            median-smoothing interval ``certify_lo`` / ``certify_hi`` at ``certify.radius``), noise seeded by
            :func:`~advrobust.scan.certification.scan_certify_seed`. None: no certification.
        hats: also write the catalogue as a HATS catalog in this folder
            (:func:`advrobust.scan.hats.write_hats`; needs ``carry`` to hold ``ra`` and ``dec``).
        z_spec: photo-z: the dataset value holding the true redshifts; adds the ``pit`` / ``crps``
            columns (:mod:`advrobust.scan.rows`).
        qp: photo-z: also write each chunk's p.d.f.s as qp files (module docstring; needs ``qp-prob``).

    Returns:
        ``{"out": path, "objects": N, "computed": objects computed by this process, "seconds": wall
        time, "resumed": bool}``.

    Raises:
        ValueError: unknown attack, a photo-z model without E(B-V), NaN pixels under ``nan_policy="raise"``,
            ``z_spec`` / ``qp`` with a classifier or a ``z_spec`` value the dataset lacks.
        ImportError: ``qp`` without the qp package (says how to install it).
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
    if certify is not None:
        certify.check(task)
    _check_pdf_outputs(task, dataset, z_spec, qp)
    device = model_device(model) or torch.device("cpu")
    to_band = (lambda v: None if v is None else torch.as_tensor(np.asarray(v, dtype=np.float32), device=device))
    for name in attacks:  # what an attack refuses (pixels beyond the stamp, ...) fails before any output
        attack_by_name(name, model, settings, task=task, image_shape=tuple(dataset.images.shape[1:]))
    store = PartStore(out)
    manifest = {
        "attacks": attacks, "settings": settings.as_dict(), "seed": int(seed), "chunk_size": chunk_size,
        "batch_size": batch_size, "objects": len(dataset), "image_shape": list(dataset.images.shape[1:]),
        "task": task, "device": device.type, "lo": None if lo is None else np.asarray(lo, float).tolist(),
        "hi": None if hi is None else np.asarray(hi, float).tolist(),
        "pixel_lo": None if pixel_lo is None else np.asarray(pixel_lo, float).tolist(),
        "pixel_hi": None if pixel_hi is None else np.asarray(pixel_hi, float).tolist(), "z_spec": z_spec,
        "qp": bool(qp), **dict(config or {}),
    }
    carried = _check_carry(carry, dataset, hats)
    manifest["carry"] = sorted(carried)
    if certify is not None:  # (absent otherwise: scans started before this option resume unchanged)
        manifest["certify"] = certify.as_dict()
    resumed = store.open(manifest, create=True)  # created once, atomically; every process compares
    chunks = plan_chunks(len(dataset), chunk_size)
    rank, world, launcher = distributed.launcher_rank()
    claims = ChunkClaims(store, timeout=claim_timeout)

    def compute(chunk):
        rows = dataset.indices[chunk.start:chunk.stop]
        images = torch.from_numpy(dataset.read_images(chunk.start, chunk.stop)).to(device)
        extra = (torch.from_numpy(dataset.values[ebv][rows]).to(device),) if task == "photoz" else ()
        ids = dataset.ids[rows] if dataset.ids is not None else rows
        z = None if z_spec is None else torch.from_numpy(np.asarray(dataset.values[z_spec][rows]))
        pdfs: dict = {}
        rows_out = scan_rows(model, images, extra, ids, task=task, attacks=attacks, settings=settings,
                             seed=chunk_seed(seed, chunk), batch_size=batch_size, lo=to_band(lo), hi=to_band(hi),
                             pixel_lo=to_band(pixel_lo), pixel_hi=to_band(pixel_hi), z_spec=z,
                             on_pdf=(lambda column, pdf: pdfs.setdefault(column, []).append(pdf.cpu())) if qp else None)
        if certify is not None:
            rows_out = {**rows_out, **certify_rows(model, images, extra, task=task, settings=certify,
                                                   seed=scan_certify_seed(seed, chunk), prefix="certify_")}
        if qp:
            _write_chunk_qp(store, chunk, pdfs, model.bin_edges, ids, z)
        taken = sorted(set(rows_out) & set(carried))
        if taken:
            raise ValueError(f"carried column(s) {taken} would replace the scan's own columns; rename them")
        return {**rows_out, **{name: values[rows] for name, values in carried.items()}}

    computed = run_chunks(store, chunks, compute, progress=progress and rank == 0, claims=claims,
                          desc=f"scan ({launcher} rank {rank} of {world})" if world > 1 else "scan",
                          first=rank * len(chunks) // world)
    assemble_once(store, chunks, claims, then=None if hats is None else (lambda out: _write_hats(out, hats)))
    return {"out": store.out, "objects": len(dataset), "computed": computed,
            "seconds": time.perf_counter() - t0, "resumed": resumed}


def _check_pdf_outputs(task: str, dataset: SurveyDataset, z_spec: Optional[str], qp: bool) -> None:
    """Refuse ``z_spec`` / ``qp`` where they cannot apply; import qp early (before any chunk) when asked."""
    if (z_spec is not None or qp) and task != "photoz":
        raise ValueError("z_spec and qp apply to photo-z models (their redshift p.d.f.s), not to a classifier")
    if z_spec is not None and z_spec not in dataset.values:
        raise ValueError(f"the survey has no {z_spec!r} value for z_spec (values: {sorted(dataset.values) or 'none'})")
    if qp:
        from advrobust.data.qp_io import import_qp

        import_qp()


def qp_chunk_path(store: PartStore, column: str, chunk) -> str:
    """The qp file of ``column`` (``clean`` or an attack) for ``chunk``: ``<out>.parts/qp/<column>-<chunk>.hdf5``."""
    return os.path.join(store.folder, "qp", f"{column}-{chunk.index:08d}.hdf5")


def _write_chunk_qp(store: PartStore, chunk, pdfs: Mapping[str, list], edges, ids: np.ndarray,
                    z_spec: Optional[torch.Tensor]) -> None:
    """One qp file per column of ``pdfs`` (``{column: [(B, bins) p.d.f. batches]}``) of ``chunk``."""
    from advrobust.data.qp_io import write_qp

    os.makedirs(os.path.join(store.folder, "qp"), exist_ok=True)
    for column, parts in pdfs.items():
        write_qp(qp_chunk_path(store, column, chunk), torch.cat(parts), edges.cpu(), ids=np.asarray(ids),
                 z_spec=z_spec)


def _write_hats(catalogue: str, folder: str) -> None:
    from advrobust.scan.hats import write_hats

    write_hats(catalogue, folder)


def _check_carry(carry: Optional[Mapping[str, np.ndarray]], dataset: SurveyDataset,
                 hats: Optional[str]) -> dict:
    """The carried columns, checked: one value per source row of the survey, names not taken."""
    carried = {str(name): np.asarray(values) for name, values in (carry or {}).items()}
    n_source = len(dataset.images)
    for name, values in carried.items():
        if values.shape != (n_source,):
            raise ValueError(f"carried column {name!r} must have one value per image ({n_source},), got {values.shape}")
    if hats is not None:
        if not {"ra", "dec"} <= set(carried):
            raise ValueError("a HATS catalog needs the objects' sky positions: carry 'ra' and 'dec' "
                             "(--ra-column / --dec-column)")
        from advrobust.scan.hats import check_positions

        check_positions(carried["ra"][dataset.indices], carried["dec"][dataset.indices], "the survey catalogue")
    return carried
