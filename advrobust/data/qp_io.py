"""Binned redshift p.d.f.s as ``qp`` ensembles, the file format of LSST DESC's photo-z framework (RAIL).

:func:`write_qp` writes ``(N, bins)`` probabilities per bin as a ``qp.hist`` ensemble on the bin
edges, with the object ids and ``z_spec`` in its ancillary table; ``qp.read(path)`` reads it back.
``qp`` stores the densities ``p_k / w_k`` (per unit redshift) in float64, so a file costs
``8 * bins`` bytes per object (1.44 GB per million objects at 180 bins) plus the ancillary table.

``qp`` is optional: ``pip install qp-prob`` (or the ``qp`` extra, ``pip install -e .[qp]``).
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from advrobust.atomic import atomic_path
from advrobust.binned_pdf import ArrayLike, check_edges, check_pdf

__all__ = ["write_qp", "import_qp", "QP_SUFFIXES"]

#: qp's own single-file format (its ``.pq`` writes three files, its ``.h5`` pickles through pandas,
#: and its ``.fits`` writer drops the suffix of the temporary file of an atomic write)
QP_SUFFIXES = (".hdf5",)


def import_qp():
    """The ``qp`` module.

    Raises:
        ImportError: ``qp`` is not installed, saying how to install it.
    """
    try:
        import qp
    except ImportError as err:
        raise ImportError("writing qp files needs the qp package: pip install qp-prob "
                          "(or install advrobust with its extra: pip install -e .[qp])") from err
    return qp


def _ancil_column(values, n: int, name: str) -> np.ndarray:
    column = np.asarray(values.detach().cpu() if hasattr(values, "detach") else values)
    if column.shape != (n,):
        raise ValueError(f"{name} must have one value per p.d.f., shape ({n},), got {column.shape}")
    if column.dtype.kind == "f" and not np.all(np.isfinite(column)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if column.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be integers or floats (qp's ancillary table), got dtype {column.dtype}")
    return column


def write_qp(path: str | os.PathLike, pdf: ArrayLike, edges: ArrayLike, *,
             ids: Optional[ArrayLike] = None, z_spec: Optional[ArrayLike] = None) -> None:
    """Write binned p.d.f.s as a ``qp`` histogram ensemble, readable with ``qp.read(path)``.

    The ensemble is ``qp.hist`` with ``bins = edges`` and ``pdfs = pdf / widths`` (densities, rows
    renormalised to integrate to 1); ``ids`` and ``z_spec``, when given, are the ancillary columns
    ``id`` and ``z_spec``. The write is atomic (:func:`advrobust.atomic.atomic_path`).

    Args:
        path: the output file, ``.hdf5`` (qp's own format, what RAIL writes).
        pdf: ``(N, bins)`` probabilities per bin (tensor on any device, or array), rows summing to 1.
        edges: ``(bins + 1,)`` strictly increasing bin edges (e.g. :func:`advrobust.redshift.bin_edges`).
        ids: ``(N,)`` integer object ids (or floats).
        z_spec: ``(N,)`` true redshifts.

    Raises:
        ImportError: ``qp`` is not installed (says how to install it).
        ValueError: an unsupported suffix; bad ``pdf`` / ``edges`` (:mod:`advrobust.binned_pdf`);
            ``ids`` / ``z_spec`` not of length ``N`` or non-finite.
        FileNotFoundError: the folder of ``path`` does not exist.

    Example:
        >>> write_qp("pdfs.hdf5", pdf, bin_edges(180, 4.0), ids=ids, z_spec=z)  # doctest: +SKIP
        >>> qp.read("pdfs.hdf5").ancil["z_spec"]  # doctest: +SKIP
    """
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in QP_SUFFIXES:
        raise ValueError(f"{path}: write_qp writes {' or '.join(QP_SUFFIXES)} files, got suffix {suffix!r}")
    qp = import_qp()
    e = check_edges(edges)
    p = check_pdf(pdf, e)
    ancil = {column: _ancil_column(values, p.shape[0], argument)
             for column, argument, values in (("id", "ids", ids), ("z_spec", "z_spec", z_spec)) if values is not None}
    ensemble = qp.Ensemble(qp.hist, data={"bins": e, "pdfs": p / np.diff(e), "norm": False, "warn": False})
    if ancil:
        ensemble.set_ancil(ancil)
    with atomic_path(path) as tmp:
        ensemble.write_to(tmp)
