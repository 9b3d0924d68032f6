"""The survey of the data options (``--data``, ``--catalog``, ``--nan-policy``, ...), shared by every
command that reads one (``attack``, ``certify``, ``scan``, ``train``)."""
from __future__ import annotations

import os
from typing import Dict, Tuple

import numpy as np

#: the item names under which the commands put the target column in the :class:`SurveyDataset`
LABEL, REDSHIFT, EBV = "label", "z_spec", "ebv"


def add_data_arguments(parser, *, target_help: str | None) -> None:
    """The data options in a group ``data`` of ``parser``; ``target_help=None``: no ``--target``
    (a command that needs no truth)."""
    data = parser.add_argument_group("data")
    data.add_argument("--data", help="image cube (N, C, H, W): .npy, .npz, HDF5 or FITS (streamed)")
    data.add_argument("--key", help="array / dataset / HDU of the images in --data")
    data.add_argument("--catalog", help="catalogue (FITS, CSV, Parquet, npz, HDF5); default: the --data file")
    data.add_argument("--catalog-key", help="FITS table or HDF5 group of the catalogue")
    data.add_argument("--id-column", help="catalogue column of object ids, joined exactly to --image-ids "
                      "(default: rows are joined by position and the id is the row number)")
    data.add_argument("--image-ids", help="array of the images' ids in --data (default: --id-column's name)")
    if target_help is not None:
        data.add_argument("--target", help=target_help)
    data.add_argument("--ebv-column", default=EBV, help="catalogue column of E(B-V), for photo-z models (default ebv)")
    data.add_argument("--nan-policy", default="raise", choices=("raise", "reject", "fill"),
                      help="objects with NaN / Inf pixels or values: raise (default), reject them, or fill "
                           "bad pixels with 0")


def open_survey(args, *, photoz: bool, n_classes: int | None = None):
    """The :class:`~advrobust.data.SurveyDataset` of the data options: items ``image``, the target
    column (``args.target``, absent where the command has no ``--target``) as ``label`` (classifier;
    int64 in ``[0, n_classes)``) or ``z_spec`` (photo-z), and ``ebv`` for photo-z models.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a missing column or key (the message lists those present), labels that are not
            whole numbers in ``[0, n_classes)``, and :func:`~advrobust.data.load_survey`'s errors.
    """
    from advrobust.data import load_survey

    _check_files(args)
    target = getattr(args, "target", None)
    columns = {}
    if target is not None:
        columns[REDSHIFT if photoz else LABEL] = target
    if photoz:
        columns[EBV] = args.ebv_column
    carry = [c for c in (getattr(args, "ra_column", None), getattr(args, "dec_column", None)) if c is not None]
    dataset = load_survey(args.data, args.catalog, columns=columns, image_key=args.key,
                          catalogue_key=args.catalog_key, id_column=args.id_column, image_ids=args.image_ids,
                          nan_policy=args.nan_policy, carry=carry)
    if LABEL in dataset.values:
        dataset.values[LABEL] = _class_indices(dataset.values[LABEL], target, n_classes)
    return dataset


def _check_files(args) -> None:
    """FileNotFoundError naming ``--data`` or ``--catalog`` when that file does not exist."""
    if not os.path.exists(args.data):
        raise FileNotFoundError(f"--data {args.data}: no such file")
    if args.catalog is not None and not os.path.exists(args.catalog):
        raise FileNotFoundError(f"--catalog {args.catalog}: no such file")


def input_config(args) -> dict:
    """Every data option that changes which objects are read and their values, with a fingerprint
    (:func:`advrobust.data.fingerprint.file_fingerprint`: size, modification time, sampled SHA-256) of
    ``--data`` and ``--catalog``: what a resumed scan or training compares with its start, so a file
    rewritten in place or a changed option is refused instead of mixing old and new rows."""
    from advrobust.data.fingerprint import file_fingerprint

    _check_files(args)
    return {"data": os.path.abspath(args.data), "key": args.key,
            "catalog": None if args.catalog is None else os.path.abspath(args.catalog),
            "catalog_key": args.catalog_key, "id_column": args.id_column, "image_ids": args.image_ids,
            "target": getattr(args, "target", None), "ebv_column": args.ebv_column, "nan_policy": args.nan_policy,
            "data_fingerprint": file_fingerprint(args.data),
            "catalog_fingerprint": None if args.catalog is None else file_fingerprint(args.catalog)}


def _class_indices(labels: np.ndarray, target: str, n_classes: int | None) -> np.ndarray:
    """``labels`` as int64 class indices; ValueError for labels that are not whole numbers in ``[0, n_classes)``."""
    if labels.dtype.kind == "f":
        if not np.all(labels == np.round(labels)):
            raise ValueError(f"--target {target}: a classifier's labels must be whole numbers "
                             f"(class indices), got e.g. {labels[labels != np.round(labels)][:3].tolist()}")
        labels = labels.astype(np.int64)
    if n_classes is not None and labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"--target {target}: labels must be class indices in [0, {n_classes}) for this "
                         f"model, got values in [{labels.min()}, {labels.max()}]")
    return labels


def fields(photoz: bool) -> tuple:
    """Item keys ``(x, y, *extra)`` of :func:`open_survey`'s dataset for the Trainer."""
    return ("image", REDSHIFT, EBV) if photoz else ("image", LABEL)


def read_rows(dataset, n: int | None = None) -> Tuple[np.ndarray, Dict[str, np.ndarray], np.ndarray]:
    """The first ``n`` objects (all by default): ``(images (n, C, H, W) float32, {item: (n,)}, ids (n,))``;
    ids are the catalogue's (``--id-column``) or the rows of the image file."""
    n = len(dataset) if n is None else min(int(n), len(dataset))
    if n <= 0:
        raise ValueError("no objects to process (empty data, or all rejected by --nan-policy)")
    rows = dataset.indices[:n]
    values = {name: column[rows] for name, column in dataset.values.items()}
    ids = dataset.ids[rows] if dataset.ids is not None else rows.astype(np.int64)
    return dataset.read_images(0, n), values, ids
