"""A torch Dataset of survey cutouts with their catalogue values, and its augmentation."""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from advrobust.data.io import load_catalogue
from advrobust.options import option
from advrobust.data.readers import ArrayReader, ImageReader, open_images

__all__ = ["SurveyDataset", "load_survey", "random_dihedral", "REDSHIFT_NAMES", "EBV_NAMES"]

_NAN_POLICIES = ("raise", "reject", "fill")


def random_dihedral(image: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One of the 8 flips / 90-degree rotations of ``image`` ``(..., H, W)``, uniformly at random (Campagne 2021).

    Square images only (rotations must keep the shape).
    """
    if image.shape[-1] != image.shape[-2]:
        raise ValueError(f"random_dihedral needs square images, got {tuple(image.shape[-2:])}")
    turns, flip = torch.randint(0, 4, (2,), generator=generator).tolist()
    image = torch.rot90(image, turns, dims=(-2, -1))
    return torch.flip(image, dims=(-1,)) if flip % 2 else image


#: item names whose values are redshifts (must be > -1) and E(B-V) (must be >= 0)
REDSHIFT_NAMES = ("z", "z_spec", "zspec", "redshift", "z_phot")
EBV_NAMES = ("ebv", "e_bv")
_ID_LIKE = ("id", "objid", "objectid", "object_id", "source_id", "sourceid", "specobjid", "galaxy_id")


def _samples(mask: np.ndarray) -> str:
    where = np.flatnonzero(mask)
    return f"{where.size} objects (first indices {where[:10].tolist()})"


def _check_physical(name: str, column: np.ndarray) -> None:
    """Redshifts > -1 and E(B-V) >= 0 (NaN is left to the NaN policy): catches -99 / -999 markers."""
    key = name.lower()
    finite = np.isfinite(column)
    if key in REDSHIFT_NAMES:
        bad = finite & (column <= -1)
        rule = "redshifts must be > -1"
    elif key in EBV_NAMES:
        bad = finite & (column < 0)
        rule = "E(B-V) must be >= 0"
    else:
        return
    if bad.any():
        values = np.unique(column[bad])[:5].tolist()
        raise ValueError(f"target {name!r}: {rule}, got {values} for {_samples(bad)}; if these mark missing "
                         f"values, pass {option('missing_values', tuple(values), flag_value=','.join(map(str, values)))} "
                         "(they are then handled as NaN)")


def _check_float32_exact(name: str, column: np.ndarray) -> None:
    """A float column of whole numbers that float32 (the items' dtype) would round is refused: ids
    stored as float64 (e.g. 1237651191354409216.0) must not turn into other ids."""
    if column.dtype.kind != "f" or column.dtype.itemsize <= 4:
        return
    with np.errstate(over="ignore", invalid="ignore"):
        whole = np.isfinite(column) & (column == np.round(column)) & (np.abs(column) > 2 ** 24)
        rounded = whole & (column.astype(np.float32).astype(np.float64) != column)
    if rounded.any():
        raise ValueError(f"target {name!r} holds whole numbers beyond 2**24 that float32 would round (ids?), e.g. "
                         f"{column[rounded][:3].tolist()}; object ids go to {option('id_column')} (kept exactly), "
                         "not to the values")


class SurveyDataset(torch.utils.data.Dataset):
    """Cutouts ``(N, C, H, W)`` and per-object values (redshift, E(B-V), label, ...).

    Items are dictionaries ``{"image": (C, H, W) float32, "index": int64 row of the image in the
    source, <name>: scalar tensor, ...}``: integer values become int64, the others float32.
    ``torch.utils.data.DataLoader`` batches them as is. Object ids, which neither float32 nor int64
    always hold exactly, are kept aside in :attr:`ids` (look them up with ``ds.ids[batch["index"]]``).

    Images are read one item at a time from ``images`` (an array, a tensor or an
    :class:`~advrobust.data.readers.ImageReader` streaming a file), so a file larger than memory
    works. NaN / Inf pixels are found lazily: under ``"raise"`` when an item is read (the error
    names it), under ``"reject"`` by one scan at construction, chunk by chunk
    (``scan_rows`` images at a time, bounded memory), under ``"fill"`` never.

    Args:
        images: ``(N, C, H, W)`` array or tensor, or an image reader.
        targets: name -> ``(N,)`` numeric values, e.g. ``{"z_spec": ..., "ebv": ...}``. Values named
            as redshifts (:data:`REDSHIFT_NAMES`) must be > -1 and E(B-V) (:data:`EBV_NAMES`) >= 0.
        ids: ``(N,)`` object ids (int64, uint64, strings, ...), kept exactly in :attr:`ids`.
        augment: apply a random flip / 90-degree rotation (:func:`random_dihedral`) to each item.
        nan_policy: objects whose image has NaN or infinite pixels or whose values are NaN or
            infinite (missing): ``"raise"`` (ValueError naming them), ``"reject"`` (drop them),
            ``"fill"`` (bad pixels replaced by ``fill_value``; bad values still raise).
        fill_value: replacement of NaN / infinite pixels under ``"fill"``.
        missing_values: values of ``targets`` that mark a missing value (e.g. ``(-99, -999)``):
            treated as NaN, i.e. by ``nan_policy``.
        scan_rows: images per chunk of the ``"reject"`` scan.

    Attributes:
        indices: ``(len,)`` rows of the source kept. ids: ``(N,)`` ids (None when none given).
        join: how the values were matched to the images (``"position"``, or ``"id:<column>"`` from
            :func:`load_survey`).

    Raises:
        ValueError: wrong shapes, lengths that differ, NaN values (or, when read, pixels) under
            ``"raise"``, redshifts <= -1, negative E(B-V), an unknown policy.

    Example:
        >>> data = simulate_photoz(16, seed=0)
        >>> ds = SurveyDataset(data["images"], {"z_spec": data["z_spec"], "ebv": data["ebv"]}, augment=True)
        >>> ds[0]["image"].shape
        torch.Size([5, 64, 64])
    """

    def __init__(
        self,
        images: np.ndarray | Tensor | ImageReader,
        targets: Mapping[str, np.ndarray | Sequence | Tensor] | None = None,
        *,
        ids: np.ndarray | Sequence | None = None,
        augment: bool = False,
        nan_policy: str = "raise",
        fill_value: float = 0.0,
        missing_values: Sequence[float] = (),
        scan_rows: int = 256,
    ) -> None:
        if nan_policy not in _NAN_POLICIES:
            raise ValueError(f"nan_policy must be one of {_NAN_POLICIES}, got {nan_policy!r}")
        if isinstance(images, Tensor):
            images = images.detach().cpu().numpy()
        if not isinstance(images, ImageReader):
            if getattr(images, "ndim", None) != 4:
                raise ValueError(f"images must have shape (N, C, H, W), got {getattr(images, 'shape', type(images))}")
            images = ArrayReader(images)
        n = len(images)
        missing = np.asarray(missing_values, dtype=np.float64).reshape(-1)
        values: dict[str, np.ndarray] = {}
        for name, column in (targets or {}).items():
            if isinstance(column, Tensor):
                column = column.detach().cpu().numpy()
            column = np.asarray(column)
            if column.shape != (n,):
                raise ValueError(f"target {name!r} must have shape ({n},) to match the images, got {column.shape}")
            if column.dtype.kind not in "biuf":
                raise ValueError(f"target {name!r} must be numeric, got dtype {column.dtype}")
            if column.dtype.kind == "u" and column.size and column.max() > np.iinfo(np.int64).max:
                raise ValueError(f"target {name!r} has uint64 values beyond int64 (ids?); pass ids as ids=")
            if missing.size and np.isin(column, missing).any():
                column = np.where(np.isin(column, missing), np.nan, column.astype(np.float64))
            _check_physical(name, column)
            _check_float32_exact(name, column)
            values[name] = column.astype(np.int64 if column.dtype.kind in "biu" else np.float32)
        if "image" in values or "index" in values:
            raise ValueError("'image' and 'index' are reserved for the cutouts and their rows; rename that target")
        if ids is not None:
            ids = np.asarray(ids)
            if ids.shape != (n,):
                raise ValueError(f"ids must have shape ({n},) to match the images, got {ids.shape}")

        bad_values = np.zeros(n, dtype=bool)
        for column in values.values():
            if column.dtype.kind == "f":
                bad_values |= ~np.isfinite(column)
        keep = np.ones(n, dtype=bool)
        if nan_policy == "reject":
            keep = ~(bad_values | self._bad_pixels(images, scan_rows))
        elif bad_values.any():
            raise ValueError(f"{_samples(bad_values)} have NaN/Inf/missing values; pass {option('nan_policy', 'reject')}")
        self.indices = np.flatnonzero(keep)
        self.images = images
        self.values = values
        self.ids = ids
        self.join = "position"
        self.augment = augment
        self.nan_policy = nan_policy
        self.fill_value = float(fill_value) if nan_policy == "fill" else None

    @staticmethod
    def _bad_pixels(images: ImageReader, rows: int) -> np.ndarray:
        """(N,) bool: images with a NaN or infinite pixel, scanned ``rows`` images at a time."""
        bad = np.zeros(len(images), dtype=bool)
        for start, chunk in images.chunks(rows):
            bad[start:start + len(chunk)] = ~np.isfinite(chunk.reshape(len(chunk), -1)).all(axis=1)
        return bad

    def __len__(self) -> int:
        return len(self.indices)

    def read_images(self, start: int, stop: int) -> np.ndarray:
        """Images of items ``start:stop`` as a float32 ``(n, C, H, W)`` array, read from the source
        (one read when the rows are consecutive) with the NaN policy applied: ``"fill"`` replaces
        bad pixels, ``"raise"`` names the objects that have any.

        Raises:
            ValueError: NaN / Inf pixels under ``"raise"``.
        """
        rows = self.indices[start:stop]
        if not rows.size or rows[-1] - rows[0] == rows.size - 1:
            images = self.images.read(int(rows[0]), int(rows[-1]) + 1) if rows.size else self.images.read(0, 0)
        else:
            images = np.stack([self.images.read(int(r), int(r) + 1)[0] for r in rows])
        if self.fill_value is not None:
            return np.nan_to_num(images, nan=self.fill_value, posinf=self.fill_value, neginf=self.fill_value)
        if self.nan_policy == "raise":
            bad = (~np.isfinite(images)).reshape(len(images), -1).sum(axis=1)
            if bad.any():
                named = ", ".join(f"object {r} (row {r} of {self.images.path}) has {n} NaN/Inf pixels"
                                  for r, n in zip(rows[bad > 0][:10].tolist(), bad[bad > 0][:10].tolist()))
                raise ValueError(f"{named}; pass {option('nan_policy', 'reject')} or {option('nan_policy', 'fill')}")
        return images

    def __getitem__(self, item: int) -> dict[str, Tensor]:
        index = int(self.indices[item])
        image = torch.from_numpy(self.read_images(item, item + 1)[0])
        if self.augment:
            image = random_dihedral(image)
        sample = {"image": image, "index": torch.tensor(index)}
        sample.update({name: torch.as_tensor(column[index]) for name, column in self.values.items()})
        return sample


def _exact_ids(values, what: str) -> np.ndarray:
    """Ids as a NumPy array of int64, uint64, float64 or str (bytes decoded), never cast to a float."""
    array = np.asarray(values)
    if array.dtype.kind == "O":
        if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in array):
            raise ValueError(f"{what}: some ids are missing")
        array = np.array([v.decode() if isinstance(v, bytes) else v for v in array])
    if array.dtype.kind == "S":
        array = np.char.decode(array)
    if array.dtype.kind not in "iufU":
        raise ValueError(f"{what}: ids must be integers or strings, got dtype {array.dtype}")
    return array


def _join_by_id(image_ids: np.ndarray, catalogue_ids: np.ndarray, id_column: str) -> np.ndarray:
    """Catalogue row of each image: ids matched exactly; unique catalogue ids, every image found."""
    kinds = {image_ids.dtype.kind, catalogue_ids.dtype.kind}
    image_ok = np.ones(len(image_ids), dtype=bool)
    catalogue_ok = np.ones(len(catalogue_ids), dtype=bool)
    if kinds == {"i", "u"}:  # int64 against uint64, exactly: compare as uint64, negatives match nothing
        if image_ids.dtype.kind == "i":
            image_ok = image_ids >= 0
            image_ids = np.where(image_ok, image_ids, 0).astype(np.uint64)
        else:
            catalogue_ok = catalogue_ids >= 0
            catalogue_ids = np.where(catalogue_ok, catalogue_ids, 0).astype(np.uint64)
    elif len(kinds) > 1:
        raise ValueError(f"image ids ({image_ids.dtype}) and catalogue column {id_column!r} ({catalogue_ids.dtype}) "
                         "are of different kinds; convert one (floats hold integer ids exactly only below 2**53)")
    import pandas as pd

    index = pd.Index(catalogue_ids)
    if not index.is_unique:
        dup = index[index.duplicated()].unique()[:5].tolist()
        raise ValueError(f"catalogue column {id_column!r} has duplicated ids, e.g. {dup}")
    rows = np.where(image_ok, index.get_indexer(image_ids), -1)
    rows = np.where((rows >= 0) & catalogue_ok[np.maximum(rows, 0)], rows, -1)
    if (rows < 0).any():
        lost = np.flatnonzero(rows < 0)
        raise ValueError(f"{lost.size} images have no row in the catalogue (column {id_column!r}): image indices "
                         f"{lost[:10].tolist()}, ids {image_ids[lost[:5]].tolist()}")
    return rows


def _image_ids_from_file(path, name: str) -> np.ndarray:
    """An array ``name`` of the images file: an ``.npz`` member, an HDF5 dataset or a FITS table column."""
    try:
        catalogue = load_catalogue(path, columns=[name])
    except ValueError as err:
        raise ValueError(f"{path}: no image ids {name!r} in the images file ({err}); pass {option('image_ids')}<name>") from None
    if name not in catalogue.columns:
        raise ValueError(f"{path}: no image ids {name!r} in the images file; its 1-D arrays: "
                         f"{', '.join(map(str, catalogue.columns))}; pass {option('image_ids')}<name>")
    return catalogue[name].to_numpy()


def _column_values(catalogue, name: str, column: str) -> np.ndarray:
    """A catalogue column as a NumPy array, missing values (``<NA>``, e.g. FITS TNULL) as NaN."""
    series = catalogue[column]
    if series.isna().any():
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return series.to_numpy()


def load_survey(
    images_path: str | os.PathLike,
    catalogue_path: str | os.PathLike | None = None,
    *,
    columns: Mapping[str, str] | Sequence[str] = (),
    image_key: str | None = None,
    catalogue_key: str | None = None,
    id_column: str | None = None,
    image_ids: np.ndarray | Sequence | str | None = None,
    missing_values: Sequence[float] = (),
    augment: bool = False,
    nan_policy: str = "raise",
    fill_value: float = 0.0,
    join_by_position: bool = False,
    carry: Sequence[str] = (),
) -> SurveyDataset:
    """A :class:`SurveyDataset` streaming an image file, with values from a catalogue.

    The join: with ``id_column``, each image gets the catalogue row whose ``id_column`` equals its
    id (exactly: int64, uint64 or strings; the catalogue may be in any order and longer than the
    images; ids must be unique and every image must find its row). Without it, row ``i`` is image
    ``i`` (a join by position) and the lengths must agree; a catalogue with an id-like column
    (``id``, ``objid``, ``source_id``, ...) is joined by position only with ``join_by_position=True``
    (a shuffled catalogue would otherwise give every image another object's values). ``dataset.join`` records which was done, ``dataset.ids`` the ids.

    Args:
        images_path: ``.npy``, ``.npz``, HDF5 or FITS cube, streamed by
            :func:`advrobust.data.readers.open_images`.
        catalogue_path: FITS table, CSV, Parquet, ``.npz`` or HDF5 (default: the image file itself;
            its image cube is not read for the catalogue).
        columns: catalogue columns to use, as names or as ``{item name: column name}``, e.g.
            ``{"z_spec": "ZSPEC", "ebv": "EBV"}``.
        image_key: array / dataset / HDU holding the images (default: see :func:`open_images`).
        catalogue_key: FITS table HDU or HDF5 group of the catalogue (needed when several FITS
            tables hold the columns).
        id_column: catalogue column of object ids to join on.
        image_ids: the images' ids: an ``(N,)`` array, or the name of a 1-D array in the images
            file (``.npz`` member, HDF5 dataset, FITS table column); default: ``id_column``'s name.
        missing_values: catalogue values meaning "missing" (e.g. ``(-99, -999)``), handled as NaN
            by ``nan_policy``.
        augment, nan_policy, fill_value: see :class:`SurveyDataset`.
        join_by_position: allow the join by row position although the catalogue has an id column.
        carry: catalogue columns kept as they are, at full precision, in ``dataset.carried``
            (``{column: (N,) array}`` indexed like the image file's rows; e.g. ``ra``, ``dec`` in
            degrees, which float32 would round by up to 0.08 arcsec), not checked as targets.

    Raises:
        ValueError: a missing column (the message lists those present), a catalogue whose length
            differs from the number of images (join by position), duplicated or unmatched ids,
            several FITS tables without ``catalogue_key``, an id-like column without ``id_column`` or
            ``join_by_position``, NaN / missing values under
            ``nan_policy="raise"``, redshifts <= -1 or negative E(B-V).
    """
    images = open_images(images_path, key=image_key)
    mapping = dict(columns) if isinstance(columns, Mapping) else {name: name for name in columns}
    if image_ids is not None and id_column is None:
        raise ValueError("image_ids needs id_column, the catalogue column to match them with")
    targets: dict[str, np.ndarray] = {}
    ids = None
    join = "position"
    carry = list(carry)
    carried: dict[str, np.ndarray] = {}
    if mapping or id_column is not None or carry:
        wanted = list(mapping.values()) + ([id_column] if id_column is not None else []) + carry
        catalogue = load_catalogue(catalogue_path if catalogue_path is not None else images_path,
                                   key=catalogue_key, columns=wanted)
        missing = [column for column in wanted if column not in catalogue.columns]
        if missing:
            available = catalogue.attrs.get("file_columns", list(catalogue.columns))
            raise ValueError(f"catalogue has no column(s) {missing}; available: {', '.join(map(str, available))}")
        if id_column is not None:
            if isinstance(image_ids, str) or image_ids is None:
                image_ids = _image_ids_from_file(images_path, id_column if image_ids is None else image_ids)
            image_ids = _exact_ids(image_ids, "image_ids")
            if image_ids.shape != (len(images),):
                raise ValueError(f"image_ids must have shape ({len(images)},) like the images, got {image_ids.shape}")
            rows = _join_by_id(image_ids, _exact_ids(catalogue[id_column].to_numpy(), id_column), id_column)
            catalogue = catalogue.iloc[rows].reset_index(drop=True)
            ids, join = image_ids, f"id:{id_column}"
        else:
            if len(catalogue) != len(images):
                raise ValueError(f"catalogue has {len(catalogue)} rows but there are {len(images)} images")
            id_like = [c for c in catalogue.attrs.get("file_columns", catalogue.columns) if str(c).lower() in _ID_LIKE]
            separate = catalogue_path is not None and not os.path.samefile(catalogue_path, images_path)
            if id_like and separate and not join_by_position:  # the images file's own columns are its rows
                raise ValueError(f"the catalogue has the id column(s) {id_like}: pass {option('id_column', id_like[0])} "
                                 f"to join it to the images on ids, or {option('join_by_position', True)} if row i "
                                 "of the catalogue is image i")
        targets = {name: _column_values(catalogue, name, column) for name, column in mapping.items()}
        carried = {column: _column_values(catalogue, column, column) for column in carry}
    elif catalogue_path is not None:  # no column used: still a catalogue that must match the images
        rows = len(load_catalogue(catalogue_path, key=catalogue_key, columns=[]))
        if rows != len(images):
            raise ValueError(f"{catalogue_path}: catalogue has {rows} rows but there are {len(images)} images")
    dataset = SurveyDataset(images, targets, ids=ids, augment=augment, nan_policy=nan_policy, fill_value=fill_value,
                            missing_values=missing_values)
    dataset.join = join
    dataset.carried = carried
    return dataset
