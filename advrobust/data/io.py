"""Reading and writing image cubes and catalogues: .npy / .npz, HDF5, FITS, CSV, Parquet.

Image cubes are ``(N, C, H, W)`` arrays (a ``(N, H, W)`` cube is read as one band). A catalogue is
a table with one row per image, in the same order.

| format | suffixes | images | catalogue |
|---|---|---|---|
| NumPy | ``.npy``, ``.npz`` | the array / the member ``key`` | members of an ``.npz`` |
| HDF5 | ``.h5``, ``.hdf5`` | the dataset ``key`` | 1-D datasets |
| FITS | ``.fits``, ``.fit``, ``.fits.gz`` | the image HDU named ``key``, else (no key given) the only 3-D/4-D one | first table HDU |
| CSV, Parquet | ``.csv``, ``.parquet``, ``.pq`` | | the table |
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np

from advrobust.atomic import atomic_path

__all__ = ["save_arrays", "load_arrays", "load_images", "load_catalogue"]

_NUMPY = (".npy", ".npz")
_HDF5 = (".h5", ".hdf5")
_FITS = (".fits", ".fit", ".fits.gz")
_TABLES = (".csv", ".parquet", ".pq")


def _suffix(path: str | os.PathLike, allowed: tuple[str, ...], what: str) -> str:
    name = os.fspath(path).lower()
    for suffix in sorted(allowed, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    raise ValueError(f"{path}: unsupported {what} format; use one of {', '.join(allowed)}")


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
    suffix = _suffix(path, (".npz",) + _HDF5 + _FITS, "output")
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
    suffix = _suffix(path, (".npz",) + _HDF5 + _FITS, "input")
    _check_exists(path)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as handle:
            return {key: handle[key] for key in handle.files}
    if suffix in _HDF5:
        import h5py

        with h5py.File(path, "r") as handle:
            return {key: handle[key][()] for key in handle if isinstance(handle[key], h5py.Dataset)}
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
    """Read an image cube as a float32 ``(N, C, H, W)`` array.

    ``.npy`` files are memory-mapped when already float32; ``key`` names the member of an ``.npz``,
    the HDF5 dataset or the FITS HDU. Without a key: ``"images"`` in ``.npz`` and HDF5; in FITS the
    HDU named ``IMAGES``, else the file's only 3-D / 4-D image HDU (several raise: name one). A key
    that is given must exist. A 3-D ``(N, H, W)`` cube is read as N single-band images.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unsupported suffix, missing ``key``, or not a 3-D / 4-D array.
    """
    suffix = _suffix(path, _NUMPY + _HDF5 + _FITS, "image")
    _check_exists(path)
    name = "images" if key is None else key
    if suffix == ".npy":
        images = np.load(path, mmap_mode="r", allow_pickle=False)
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as handle:
            if name not in handle.files:
                raise ValueError(f"{path}: no array {name!r}; it holds {', '.join(handle.files)}")
            images = handle[name]
    elif suffix in _HDF5:
        import h5py

        with h5py.File(path, "r") as handle:
            if name not in handle:
                raise ValueError(f"{path}: no dataset {name!r}; it holds {', '.join(handle)}")
            images = handle[name][()]
    else:
        from astropy.io import fits

        with fits.open(path) as hdus:
            named = [hdu for hdu in hdus if hdu.name.lower() == name.lower() and hdu.data is not None]
            cubes = [hdu for hdu in hdus if hdu.is_image and hdu.data is not None and hdu.data.ndim in (3, 4)]
            if not named and key is not None:
                raise ValueError(f"{path}: no image HDU {key!r}; its image HDUs: "
                                 f"{', '.join(hdu.name for hdu in cubes) or 'none'}")
            if not named and len(cubes) != 1:
                raise ValueError(f"{path}: {'no' if not cubes else len(cubes)} 3-D/4-D image HDUs"
                                 f"{' (' + ', '.join(hdu.name for hdu in cubes) + ')' if cubes else ''}; "
                                 "pass key=<HDU name>")
            images = np.asarray((named or cubes)[0].data)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise ValueError(f"{path}: images must be (N, C, H, W) or (N, H, W), got shape {images.shape}")
    if images.dtype != np.float32:
        images = images.astype(np.float32)
    return images


def load_catalogue(path: str | os.PathLike):
    """Read a catalogue (FITS table, CSV, Parquet, ``.npz`` or HDF5 of 1-D arrays) as a pandas DataFrame.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unsupported suffix or no table in the file.
    """
    import pandas as pd

    suffix = _suffix(path, _TABLES + _FITS + (".npz",) + _HDF5, "catalogue")
    _check_exists(path)
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix in _FITS:
        from astropy.io import fits
        from astropy.table import Table

        with fits.open(path) as hdus:
            tables = [hdu for hdu in hdus if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU))]
            if not tables:
                raise ValueError(f"{path}: no table HDU")
            return Table(tables[0].data).to_pandas()
    columns = {key: value for key, value in load_arrays(path).items() if value.ndim == 1}
    if not columns:
        raise ValueError(f"{path}: no 1-D arrays to form a catalogue")
    return pd.DataFrame(columns)
