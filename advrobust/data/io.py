"""Reading and writing image cubes and catalogues: .npy / .npz, HDF5, FITS, CSV, Parquet.

Image cubes are ``(N, C, H, W)`` arrays (a ``(N, H, W)`` cube is read as one band); to read them by
row range without loading the file, see :mod:`advrobust.data.readers` (:func:`open_images`). A
catalogue is a table with one row per object; :func:`advrobust.data.load_survey` joins it to the
images by an id column or, without one, by row position.

| format | suffixes | images | catalogue |
|---|---|---|---|
| NumPy | ``.npy``, ``.npz`` | the array / the member ``key`` | 1-D members of an ``.npz`` |
| HDF5 | ``.h5``, ``.hdf5`` | the dataset ``key`` | 1-D datasets (of the group ``key``) |
| FITS | ``.fits``, ``.fit``, ``.fits.gz`` | the image HDU named ``key``, else (no key given) the only 3-D/4-D one | the table HDU ``key``, else the only table (holding the requested columns) |
| CSV, Parquet | ``.csv``, ``.parquet``, ``.pq`` | | the table |

Missing values: FITS integer columns with ``TNULL`` and masked / NaN float columns arrive as missing
(pandas ``<NA>`` / NaN), never as the sentinel value.
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from advrobust.atomic import atomic_path
from advrobust.options import option
from advrobust.data.readers import (_FITS, _HDF5, _NUMPY, check_hdf5_dataset, check_npz_member, format_suffix,
                                    open_images)

__all__ = ["save_arrays", "load_arrays", "load_images", "load_catalogue"]

_TABLES = (".csv", ".parquet", ".pq")


def _check_exists(path: str | os.PathLike) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")


def save_arrays(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Write named arrays (e.g. a simulator output) to ``.npz``, HDF5 or FITS, chosen by suffix.

    In FITS, arrays of two or more dimensions become image HDUs named by their key and the 1-D arrays
    one binary table HDU named ``CATALOGUE`` (so they must have equal lengths: ValueError otherwise).

    The write is atomic (:func:`advrobust.atomic.atomic_path`): the file is written to a temporary
    file in the same folder, synced and renamed over ``path``, so a process killed at any moment
    leaves the previous file whole (or the new one), and the next save removes the killed writer's
    temporary file.

    Raises:
        ValueError: unsupported suffix, 1-D arrays of different lengths in FITS.
        FileNotFoundError: the folder of ``path`` does not exist.
    """
    suffix = format_suffix(path, (".npz",) + _HDF5 + _FITS, "output")
    arrays = {key: np.asarray(value) for key, value in arrays.items()}
    if suffix in _FITS:
        columns = {key: value for key, value in arrays.items() if value.ndim == 1}
        lengths = {key: len(value) for key, value in columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"{path}: the 1-D arrays form one FITS table and need equal lengths; got {lengths}")
    with atomic_path(path) as tmp:
        if suffix == ".npz":
            np.savez(tmp, **arrays)
        elif suffix in _HDF5:
            import h5py

            with h5py.File(tmp, "w") as handle:
                for key, value in arrays.items():
                    handle.create_dataset(key, data=value)
        else:
            from astropy.io import fits
            from astropy.table import Table

            hdus: list = [fits.PrimaryHDU()]
            hdus += [fits.ImageHDU(value, name=key) for key, value in arrays.items() if value.ndim > 1]
            if columns:
                hdus.append(fits.table_to_hdu(Table(columns)))
                hdus[-1].name = "CATALOGUE"
            fits.HDUList(hdus).writeto(tmp)


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every array written by :func:`save_arrays` (or any ``.npz`` / flat HDF5 / FITS file)."""
    suffix = format_suffix(path, (".npz",) + _HDF5 + _FITS, "input")
    _check_exists(path)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as handle:
            return {key: handle[key] for key in handle.files}
    if suffix in _HDF5:
        import h5py

        with h5py.File(path, "r") as handle:
            datasets = {key: handle[key] for key in handle if isinstance(handle[key], h5py.Dataset)}
            for key, dataset in datasets.items():
                check_hdf5_dataset(path, key, dataset)
            return {key: dataset[()] for key, dataset in datasets.items()}
    from astropy.io import fits

    arrays: dict[str, np.ndarray] = {}
    with fits.open(path) as hdus:
        for hdu in hdus:
            if isinstance(hdu, fits.BinTableHDU):
                arrays.update({name: np.asarray(hdu.data[name]) for name in hdu.columns.names})
            elif hdu.data is not None:
                arrays[hdu.name.lower()] = np.asarray(hdu.data)
    return arrays


def load_images(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """Read a whole image cube as a float32 ``(N, C, H, W)`` array.

    A native float32 C-order ``.npy`` file is memory-mapped (read-only, nothing is loaded); other
    files are read through :func:`advrobust.data.readers.open_images` (same ``key`` rules) and
    converted to float32 in native byte order. To stream a file larger than memory, use
    :func:`~advrobust.data.readers.open_images` instead.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unsupported suffix, missing ``key``, or not a 3-D / 4-D array.
    """
    if format_suffix(path) == ".npy" and key is None and os.path.exists(path):
        images = np.load(path, mmap_mode="r", allow_pickle=False)
        if images.dtype == np.dtype("=f4") and images.flags.c_contiguous and images.ndim in (3, 4):
            return images[:, None] if images.ndim == 3 else images
    with open_images(path, key) as reader:
        return reader.read(0, len(reader))


def _fits_table(path, hdus, key: str | None, columns) -> "object":
    """The table HDU ``key``, else the only table (among those holding every requested column)."""
    from astropy.io import fits

    tables = [hdu for hdu in hdus if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU))]
    if key is not None:
        named = [hdu for hdu in tables if hdu.name.lower() == key.lower()]
        if not named:
            raise ValueError(f"{path}: no table HDU {key!r}; its tables: {', '.join(h.name for h in tables) or 'none'}")
        return named[0]
    if not tables:
        raise ValueError(f"{path}: no table HDU")
    wanted = [hdu for hdu in tables if all(c in hdu.columns.names for c in columns or ())]
    if len(wanted) > 1:
        which = f"hold the columns {list(columns)}" if columns else "are tables"
        raise ValueError(f"{path}: {len(wanted)} HDUs {which} ({', '.join(h.name for h in wanted)}); "
                         f"pass {option('catalogue_key')}<HDU name> to choose")
    return (wanted or tables)[0]


def _npz_columns(path) -> dict[str, int]:
    """Name -> length of the 1-D members of an .npz, read from the member headers (no data is
    loaded; a header asking for more than its member holds is refused)."""
    import zipfile

    lengths = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            shape = check_npz_member(path, archive, member)[0]
            if len(shape) == 1:
                lengths[member[:-4] if member.endswith(".npy") else member] = shape[0]
    return lengths


def load_catalogue(path: str | os.PathLike, key: str | None = None, columns=None):
    """Read a catalogue as a pandas DataFrame (only its 1-D columns; an image cube in the same file
    is not read).

    Args:
        path: FITS table, CSV, Parquet, ``.npz`` or HDF5 of 1-D arrays.
        key: FITS: the table HDU's name (needed when several tables hold the requested columns);
            HDF5: the group holding the 1-D datasets (default: the file's root).
        columns: the columns wanted (optional): only they are read from ``.npz`` and HDF5 files (a
            column not asked for is never loaded), and a FITS file's table is chosen among those
            holding them. None: every column.

    Integer ids keep their exact values and types (int64, uint64, strings); FITS ``TNULL`` integers
    and masked values are missing (``<NA>`` / NaN).

    Raises:
        FileNotFoundError: no such file.
        ValueError: unsupported suffix, no table, a missing ``key``, several FITS tables holding the
            requested columns without a ``key``.
    """
    import pandas as pd

    suffix = format_suffix(path, _TABLES + _FITS + (".npz",) + _HDF5, "catalogue")
    _check_exists(path)
    if key is not None and suffix not in _FITS + _HDF5:
        raise ValueError(f"{path}: a catalogue key names a FITS table HDU or an HDF5 group; got key={key!r}")
    if suffix == ".csv":
        header = list(pd.read_csv(path, nrows=0).columns)
        present = [c for c in header if columns is None or c in columns]
        table = pd.read_csv(path, usecols=present or header[:1])  # one column at least: the row count
        return _with_names(table[present], header)
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        names = pq.ParquetFile(path).schema_arrow.names
        return _with_names(pd.read_parquet(path, columns=[c for c in names if columns is None or c in columns]), names)
    if suffix in _FITS:
        from astropy.io import fits
        from astropy.table import Table

        with fits.open(path, memmap=False) as hdus:
            index = hdus.index(_fits_table(path, hdus, key, columns))
        table = Table.read(path, hdu=index, mask_invalid=True)  # TNULL -> masked
        names = [name for name in table.colnames if table[name].ndim == 1]
        return _with_names(table[names].to_pandas(), names)
    wanted = None if columns is None else set(columns)
    if suffix == ".npz":
        lengths = _npz_columns(path)
        if not lengths:
            raise ValueError(f"{path}: no 1-D arrays to form a catalogue")
        with np.load(path, allow_pickle=False) as handle:
            return _frame({name: handle[name] for name in lengths if wanted is None or name in wanted}, lengths)
    import h5py

    with h5py.File(path, "r") as handle:
        group = handle if key is None else handle.get(key)
        if not isinstance(group, h5py.Group):
            raise ValueError(f"{path}: no group {key!r}; it holds {', '.join(handle)}")
        items = {name: item for name, item in group.items() if isinstance(item, h5py.Dataset) and item.ndim == 1}
        if not items:
            raise ValueError(f"{path}: no 1-D arrays to form a catalogue")
        lengths = {name: item.shape[0] for name, item in items.items()}
        for name, item in items.items():
            if wanted is None or name in wanted:
                check_hdf5_dataset(path, name, item)
        data = {name: item[()] for name, item in items.items() if wanted is None or name in wanted}
    for name, value in data.items():
        if value.dtype.kind in "SO":  # HDF5 strings arrive as bytes
            data[name] = np.array([v.decode() if isinstance(v, bytes) else v for v in value], dtype=object)
    return _frame(data, lengths)


def _frame(data: dict, lengths: Mapping[str, int]):
    """A DataFrame of the columns read, with as many rows as the file's first 1-D array when no
    column was asked for (so a catalogue's length is known without reading it).

    Raises:
        ValueError: the file's 1-D arrays differ in length.
    """
    import pandas as pd

    names = list(lengths)
    if data:
        lengths = {name: len(values) for name, values in data.items()}
        if len(set(lengths.values())) > 1:
            shown = dict(list(lengths.items())[:6])
            raise ValueError(f"catalogue columns differ in length ({shown}): not one table")
        rows = next(iter(lengths.values()))
    else:  # no column asked for: the table's length is that of most of its 1-D arrays (an auxiliary
        rows = max(set(lengths.values()), key=list(lengths.values()).count)  # array, e.g. band names, aside)
    return _with_names(pd.DataFrame(data, index=pd.RangeIndex(rows)), names)


def _with_names(frame, names):
    """``frame`` with ``attrs["file_columns"]``: every 1-D column of the file, read or not (for messages)."""
    frame.attrs["file_columns"] = [str(name) for name in names]
    return frame
