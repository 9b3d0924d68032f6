"""Streaming image readers: row ranges of a survey cube without reading the whole file.

:func:`open_images` opens an image cube and returns an :class:`ImageReader`; ``reader.read(start,
stop)`` returns images ``start:stop`` as a float32, native-byte-order ``(n, C, H, W)`` array, read
from disk for that range only and converted (dtype, byte order, FITS ``BSCALE``/``BZERO``/``BLANK``)
chunk by chunk, so memory is bounded by the chunk, not the file:

| format | how rows are served | whole file in memory |
|---|---|---|
| ``.npy`` (C order) | a memory map of just the rows asked for, unmapped after the copy | no |
| ``.npy`` (Fortran order) | slices of a memory map of the whole array | pages touched stay mapped |
| HDF5 ``.h5``/``.hdf5`` | dataset slices (h5py, chunked or contiguous) | no |
| FITS ``.fits``/``.fit`` (also tile-compressed HDUs) | image sections (astropy ``hdu.section``) | no |
| FITS ``.fits.gz`` | sections, decompressing the stream up to them | no, but each read decompresses from the file's start when it goes backwards |
| ``.npz`` | the member read whole at open (a zip member cannot be sliced) | **yes** (``reader.whole_file``) |

Which array: ``key`` names the ``.npz`` member, the HDF5 dataset or the FITS HDU. Without a key:
``"images"`` in ``.npz`` and HDF5; in FITS the HDU named ``IMAGES``, else the file's only 3-D / 4-D
image HDU (several raise: name one). A 3-D ``(N, H, W)`` cube is served as N single-band images.

Example:
    >>> with open_images("survey.h5") as reader:  # doctest: +SKIP
    ...     print(len(reader), reader.shape, reader.dtype)
    ...     for start, images in reader.chunks(256):
    ...         ...  # images: (<=256, C, H, W) float32
"""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np

from advrobust.options import option

__all__ = ["ImageReader", "ArrayReader", "open_images", "format_suffix", "check_hdf5_dataset", "check_npz_member"]

_NUMPY = (".npy", ".npz")
_HDF5 = (".h5", ".hdf5")
_FITS = (".fits", ".fit", ".fits.gz")
_FITS_DTYPES = {8: np.dtype("u1"), 16: np.dtype(">i2"), 32: np.dtype(">i4"), 64: np.dtype(">i8"),
                -32: np.dtype(">f4"), -64: np.dtype(">f8")}


def format_suffix(path: str | os.PathLike, allowed: tuple[str, ...] = _NUMPY + _HDF5 + _FITS,
                 what: str = "image") -> str:
    """The format suffix of ``path`` among ``allowed`` (longest match, case-insensitive).

    Raises:
        ValueError: none matches.
    """
    name = os.fspath(path).lower()
    for suffix in sorted(allowed, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    raise ValueError(f"{path}: unsupported {what} format; use one of {', '.join(allowed)}")


def check_hdf5_dataset(path: str | os.PathLike, name: str, dataset) -> None:
    """Refuse an HDF5 dataset whose bytes are not stored in ``path`` itself.

    HDF5 lets a dataset point at raw external files (``external``) or at other files (a virtual
    dataset's sources): a crafted ``.h5`` could then serve any readable local file as its data.
    Only data stored inside the file is read.

    Raises:
        ValueError: the dataset has external storage or is virtual.
    """
    if dataset.external:
        raise ValueError(f"{path}: dataset {name!r} keeps its data in external files "
                         f"({', '.join(str(e[0]) for e in dataset.external[:3])}); only data stored "
                         "inside the file is read: copy it in (h5py: read and write the array)")
    if os.path.realpath(dataset.file.filename) != os.path.realpath(path):
        raise ValueError(f"{path}: {name!r} is an external link to {dataset.file.filename}; only data stored "
                         "inside the file is read")
    if dataset.is_virtual:
        raise ValueError(f"{path}: dataset {name!r} is a virtual dataset (its data live in other files); "
                         "only data stored inside the file is read: copy it in (h5py: read and write the array)")


def check_npz_member(path: str | os.PathLike, archive, member: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the ``.npy`` member ``member`` of an open ``zipfile.ZipFile``, read from its
    header, after checking that the header asks for no more bytes than the member holds.

    A header may claim any shape: a 2 MB archive could make ``np.load`` allocate gigabytes before
    failing. The member's uncompressed size as the archive records it bounds what the header may
    claim. That size is itself written by whoever made the file: a genuinely compressed member may
    hold ~1000 times its compressed size (a deflate bomb), which this check does not refuse.

    Raises:
        ValueError: a header asking for more bytes than the member holds, or not an ``.npy`` member.
    """
    info = archive.getinfo(member)
    with archive.open(member) as handle:
        try:
            version = np.lib.format.read_magic(handle)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(handle)
        except ValueError as err:
            raise ValueError(f"{path}: member {member!r} is not a NumPy array ({err})") from None
        header_bytes = handle.tell()
    asked = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if dtype.hasobject or asked > info.file_size - header_bytes:
        raise ValueError(f"{path}: member {member!r} claims shape {tuple(shape)} {dtype} ({asked:,} bytes) "
                         f"but holds {max(info.file_size - header_bytes, 0):,} bytes: the file is damaged or "
                         "crafted; refusing to allocate")
    return tuple(int(s) for s in shape), dtype


def _unit_text(value) -> str | None:
    """A unit stated in a header or attribute, as text (None when absent or blank)."""
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    text = None if value is None else str(value).strip()
    return text or None


def _layout_hint(path, shape) -> str:
    """Why a cube of ``shape`` is refused, and how to get ``(N, C, H, W)``."""
    return (f"{path}: images must be a cube of cutouts (N, C, H, W) or (N, H, W), got shape {tuple(shape)}"
            + (" (a single image: cut it into stamps, e.g. with astropy.nddata.Cutout2D, and stack them "
               "into an (N, C, H, W) array)" if len(shape) == 2 else ""))


def _refuse_channels_last(path, shape) -> None:
    """(N, H, W, C) cubes would be read as C = H: refuse them with the transpose that fixes them."""
    if len(shape) == 4 and shape[1] == shape[2] != shape[3] and shape[3] <= 16:
        raise ValueError(f"{path}: shape {tuple(shape)} looks channels-last (N, H, W, C); advrobust reads "
                         "(N, C, H, W): store numpy.transpose(cube, (0, 3, 1, 2)) instead")


class ImageReader:
    """Rows of an image cube ``(N, C, H, W)``, served by range.

    Attributes:
        path: the file. key: the array / dataset / HDU name served (None for ``.npy``).
        shape: ``(N, C, H, W)`` as served (a 3-D file cube gets C = 1).
        dtype: the element type stored in the file (e.g. ``>f4``, ``>i2``); :meth:`read` always
            returns float32 in native byte order.
        whole_file: True when opening read the whole array into memory (``.npz``).
        unit: the pixel unit the file states (FITS ``BUNIT``; an HDF5 attribute ``unit``, ``units``
            or ``BUNIT`` of the dataset), or None when it states none (``.npy``, ``.npz``).

    A reader is a context manager; :meth:`close` releases the file. It may be handed to
    ``torch.utils.data.DataLoader`` worker processes: a reader used in another process than the one
    that opened it reopens its file there.
    """

    whole_file = False
    unit: str | None = None

    def __init__(self, path: str | os.PathLike, key: str | None, shape: tuple[int, ...], dtype: np.dtype) -> None:
        if len(shape) not in (3, 4):
            raise ValueError(_layout_hint(path, shape))
        _refuse_channels_last(path, shape)
        self.path = os.fspath(path)
        self.key = key
        self._file_ndim = len(shape)
        self.shape = tuple(int(s) for s in (shape if len(shape) == 4 else (shape[0], 1) + tuple(shape[1:])))
        self.dtype = np.dtype(dtype)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes of the whole cube as float32 (what reading it at once would take)."""
        return int(np.prod(self.shape)) * 4

    def read(self, start: int, stop: int) -> np.ndarray:
        """Images ``start:stop`` (clipped to ``[0, N]``, as slicing) as float32 ``(n, C, H, W)``, native byte order.

        Raises:
            TypeError: start or stop not integers.
        """
        for what, v in (("start", start), ("stop", stop)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{type(self).__name__}.read: {what} must be an integer, got {v!r}")
        start, stop, _ = slice(int(start), int(stop)).indices(len(self))
        stop = max(start, stop)
        rows = self._read(start, stop)
        if self._file_ndim == 3:
            rows = rows[:, None]
        return np.asarray(rows, dtype=np.float32)  # native byte order; _read's arrays are fresh

    def chunks(self, rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, images)`` for consecutive ranges of at most ``rows`` images, in order.

        Raises:
            ValueError: rows < 1.
        """
        if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 1:
            raise ValueError(f"{type(self).__name__}.chunks: rows must be an integer >= 1, got {rows!r}")
        for start in range(0, len(self), int(rows)):
            yield start, self.read(start, start + int(rows))

    def _read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as stored (3-D or 4-D), in an array that shares no memory with the
        caller's data (the file, or a fresh copy)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the file (reading again reopens it)."""

    def __enter__(self) -> "ImageReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        key = f", key={self.key!r}" if self.key is not None else ""
        whole = ", whole file in memory" if self.whole_file else ""
        return f"{type(self).__name__}({self.path!r}{key}, shape={self.shape}, dtype={self.dtype}{whole})"


class ArrayReader(ImageReader):
    """An in-memory (or memory-mapped) ``(N, C, H, W)`` / ``(N, H, W)`` array served as a reader."""

    def __init__(self, array: np.ndarray, path: str | os.PathLike = "<array>", key: str | None = None) -> None:
        if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
            raise TypeError(f"{path}: images must be a numeric NumPy array, got "
                            f"{getattr(array, 'dtype', type(array).__name__)}")
        super().__init__(path, key, array.shape, array.dtype)
        self.array = array

    def _read(self, start: int, stop: int) -> np.ndarray:
        return np.array(self.array[start:stop], dtype=np.float32)  # a copy: callers may write to it


class _NpzReader(ArrayReader):
    whole_file = True

    def __init__(self, path: str | os.PathLike, key: str | None) -> None:
        import zipfile

        name = "images" if key is None else key
        with zipfile.ZipFile(path) as archive:
            if name + ".npy" not in archive.namelist():
                members = [m[:-4] if m.endswith(".npy") else m for m in archive.namelist()]
                raise ValueError(f"{path}: no array {name!r}; it holds {', '.join(members)}")
            check_npz_member(path, archive, name + ".npy")
        with np.load(path, allow_pickle=False) as handle:
            array = handle[name]
        super().__init__(array, path, name)


class _NpyReader(ImageReader):
    """C-order files: each read maps only the rows asked for and unmaps them after the copy."""

    def __init__(self, path: str | os.PathLike) -> None:
        whole = np.load(path, mmap_mode="r", allow_pickle=False)
        if whole.dtype.kind not in "biuf":
            raise ValueError(f"{path}: images must be numeric, got dtype {whole.dtype}")
        super().__init__(path, None, whole.shape, whole.dtype)
        self._offset = int(whole.offset)
        self._fortran = whole.ndim > 1 and not whole.flags.c_contiguous
        self._whole = whole if self._fortran else None  # rows of a Fortran-order file are not contiguous
        del whole  # C order: unmapped, only the header was touched

    def _read(self, start: int, stop: int) -> np.ndarray:
        if self._whole is not None:
            return np.array(self._whole[start:stop], dtype=np.float32)
        row_shape = self.shape[1:] if self._file_ndim == 4 else self.shape[2:]
        if stop == start:
            return np.empty((0,) + row_shape, self.dtype)
        row_bytes = int(np.prod(row_shape)) * self.dtype.itemsize
        window = np.memmap(self.path, dtype=self.dtype, mode="r", offset=self._offset + start * row_bytes,
                           shape=(stop - start,) + row_shape)
        try:
            return np.array(window, dtype=np.float32)  # a copy, then unmap: pages must not stay mapped
        finally:
            window._mmap.close()


class _ReopeningReader(ImageReader):
    """Readers keeping a file handle: opened lazily, reopened in a new process (DataLoader workers)."""

    def __init__(self, path, key, shape, dtype) -> None:
        super().__init__(path, key, shape, dtype)
        self._handle = None
        self._pid = None

    def _open(self):
        raise NotImplementedError

    def _file(self):
        if self._handle is None or self._pid != os.getpid():
            self._handle, self._pid = self._open(), os.getpid()
        return self._handle

    def close(self) -> None:
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handle"] = None
        return state


class _HDF5Reader(_ReopeningReader):
    def __init__(self, path: str | os.PathLike, key: str | None) -> None:
        import h5py

        name = "images" if key is None else key
        with h5py.File(path, "r") as handle:
            if name not in handle or not isinstance(handle[name], h5py.Dataset):
                raise ValueError(f"{path}: no dataset {name!r}; it holds {', '.join(handle)}")
            dataset = handle[name]
            if dataset.dtype.kind not in "biuf":
                raise ValueError(f"{path}: dataset {name!r} must be numeric, got dtype {dataset.dtype}")
            check_hdf5_dataset(path, name, dataset)
            shape, dtype = dataset.shape, dataset.dtype
            unit = next((dataset.attrs[k] for k in ("unit", "units", "BUNIT") if k in dataset.attrs), None)
        super().__init__(path, name, shape, dtype)
        self.unit = _unit_text(unit)

    def _open(self):
        import h5py

        return h5py.File(self.path, "r")

    def _read(self, start: int, stop: int) -> np.ndarray:
        return self._file()[self.key][start:stop]


def _fits_cube(path, hdus, key: str | None):
    """The image HDU holding the cube (see the module docstring), read from headers only."""
    name = "images" if key is None else key
    images = [hdu for hdu in hdus if hdu.is_image and hdu.header.get("NAXIS", 0) > 0]
    named = [hdu for hdu in images if hdu.name.lower() == name.lower()]
    cubes = [hdu for hdu in images if hdu.header.get("NAXIS") in (3, 4)]
    listed = ", ".join(f"{hdu.name or '(primary)'} {_fits_shape(hdu)}" for hdu in images) or "none"
    if not named and key is not None:
        raise ValueError(f"{path}: no image HDU {key!r}; its image HDUs: {listed}")
    if not named and not cubes:
        raise ValueError(_layout_hint(path, _fits_shape(images[0])) if len(images) == 1 else
                         f"{path}: no cube of cutouts (N, C, H, W) or (N, H, W) among its image HDUs ({listed})")
    if not named and len(cubes) > 1:
        raise ValueError(f"{path}: {len(cubes)} image cubes ({listed}); name the one to read with "
                         f"{option('key')}<HDU name>")
    hdu = (named or cubes)[0]
    if hdu.header.get("NAXIS") not in (3, 4):
        raise ValueError(_layout_hint(path, _fits_shape(hdu)))
    return hdu


def _fits_shape(hdu) -> tuple[int, ...]:
    """An image HDU's shape (NumPy order), from its header."""
    return tuple(int(hdu.header[f"NAXIS{i}"]) for i in range(hdu.header["NAXIS"], 0, -1))


class _FitsReader(_ReopeningReader):
    def __init__(self, path: str | os.PathLike, key: str | None) -> None:
        from astropy.io import fits

        with fits.open(path, memmap=False) as hdus:
            hdu = _fits_cube(path, hdus, key)
            index = hdus.index(hdu)
            # the stored type; sections apply BSCALE / BZERO and turn BLANK into NaN
            super().__init__(path, hdu.name, tuple(hdu.shape), _FITS_DTYPES[hdu.header["BITPIX"]])
            self.unit = _unit_text(hdu.header.get("BUNIT"))
        self._index = index

    def _open(self):
        from astropy.io import fits

        return fits.open(self.path, memmap=False)

    def _read(self, start: int, stop: int) -> np.ndarray:
        return self._file()[self._index].section[start:stop]


def open_images(path: str | os.PathLike, key: str | None = None) -> ImageReader:
    """Open an image cube for reading by row range (see the module docstring for the formats).

    Args:
        path: ``.npy``, ``.npz``, ``.h5``/``.hdf5``, ``.fits``/``.fit``/``.fits.gz``.
        key: the ``.npz`` member, HDF5 dataset or FITS HDU holding the images (default: see the
            module docstring).

    Returns:
        An :class:`ImageReader` (a context manager): ``len(r)``, ``r.shape`` ``(N, C, H, W)``,
        ``r.dtype`` (in the file), ``r.read(start, stop)`` -> float32 ``(n, C, H, W)``,
        ``r.chunks(rows)``, ``r.whole_file``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unsupported suffix, missing ``key``, several FITS cubes without a key, a
            non-numeric array, or not a 3-D / 4-D array.
    """
    suffix = format_suffix(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if suffix == ".npy":
        if key is not None:
            raise ValueError(f"{path}: a .npy file holds one array; key={key!r} does not apply")
        return _NpyReader(path)
    if suffix == ".npz":
        return _NpzReader(path, key)
    if suffix in _HDF5:
        return _HDF5Reader(path, key)
    return _FitsReader(path, key)
