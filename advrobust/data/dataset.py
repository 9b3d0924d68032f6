"""A torch Dataset of survey cutouts with their catalogue values, and its augmentation."""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from advrobust.data.io import load_catalogue, load_images

__all__ = ["SurveyDataset", "load_survey", "random_dihedral"]

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


class SurveyDataset(torch.utils.data.Dataset):
    """Cutouts ``(N, C, H, W)`` and per-object values (redshift, E(B-V), label, ...).

    Items are dictionaries ``{"image": (C, H, W) float32, <name>: scalar tensor, ...}``: integer
    values become int64, the others float32. ``torch.utils.data.DataLoader`` batches them as is.

    Args:
        images: ``(N, C, H, W)`` array or tensor (a memory-mapped array stays on disk).
        targets: name -> ``(N,)`` values, e.g. ``{"z_spec": ..., "ebv": ...}``.
        augment: apply a random flip / 90-degree rotation (:func:`random_dihedral`) to each item.
        nan_policy: what to do with objects whose image has NaN or infinite pixels or whose values
            are NaN or infinite: ``"raise"`` (ValueError naming them), ``"reject"`` (drop them),
            ``"fill"`` (bad pixels replaced by ``fill_value``; bad values still raise).
        fill_value: replacement of NaN / infinite pixels under ``"fill"``.

    Raises:
        ValueError: wrong shapes, lengths that differ, NaN under ``"raise"``, an unknown policy.

    Example:
        >>> data = simulate_photoz(16, seed=0)
        >>> ds = SurveyDataset(data["images"], {"z_spec": data["z_spec"], "ebv": data["ebv"]}, augment=True)
        >>> ds[0]["image"].shape
        torch.Size([5, 64, 64])
    """

    def __init__(
        self,
        images: np.ndarray | Tensor,
        targets: Mapping[str, np.ndarray | Sequence | Tensor] | None = None,
        *,
        augment: bool = False,
        nan_policy: str = "raise",
        fill_value: float = 0.0,
    ) -> None:
        if nan_policy not in _NAN_POLICIES:
            raise ValueError(f"nan_policy must be one of {_NAN_POLICIES}, got {nan_policy!r}")
        if isinstance(images, Tensor):
            images = images.detach().cpu().numpy()
        if getattr(images, "ndim", None) != 4:
            raise ValueError(f"images must have shape (N, C, H, W), got {getattr(images, 'shape', type(images))}")
        n = len(images)
        values: dict[str, np.ndarray] = {}
        for name, column in (targets or {}).items():
            if isinstance(column, Tensor):
                column = column.detach().cpu().numpy()
            column = np.asarray(column)
            if column.shape != (n,):
                raise ValueError(f"target {name!r} must have shape ({n},) to match the images, got {column.shape}")
            if column.dtype.kind not in "biuf":
                raise ValueError(f"target {name!r} must be numeric, got dtype {column.dtype}")
            values[name] = column.astype(np.int64 if column.dtype.kind in "biu" else np.float32)
        if "image" in values:
            raise ValueError("'image' is reserved for the cutouts; rename that target")

        bad_pixels = np.array([not np.isfinite(images[i]).all() for i in range(n)], dtype=bool)
        bad_values = np.zeros(n, dtype=bool)
        for column in values.values():
            if column.dtype.kind == "f":
                bad_values |= ~np.isfinite(column)
        keep = np.ones(n, dtype=bool)
        if nan_policy == "reject":
            keep = ~(bad_pixels | bad_values)
        else:
            bad = bad_values if nan_policy == "fill" else bad_pixels | bad_values
            if bad.any():
                where = np.flatnonzero(bad)
                raise ValueError(
                    f"{where.size} objects have NaN/Inf {'values' if nan_policy == 'fill' else 'pixels or values'} "
                    f"(first indices {where[:10].tolist()}); pass nan_policy='reject' or 'fill'"
                )
        self.indices = np.flatnonzero(keep)
        self.images = images
        self.values = values
        self.augment = augment
        self.fill_value = float(fill_value) if nan_policy == "fill" else None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> dict[str, Tensor]:
        index = int(self.indices[item])
        image = torch.from_numpy(np.array(self.images[index], dtype=np.float32))
        if self.fill_value is not None:
            image = torch.nan_to_num(image, nan=self.fill_value, posinf=self.fill_value, neginf=self.fill_value)
        if self.augment:
            image = random_dihedral(image)
        sample = {"image": image}
        sample.update({name: torch.as_tensor(column[index]) for name, column in self.values.items()})
        return sample


def load_survey(
    images_path: str | os.PathLike,
    catalogue_path: str | os.PathLike | None = None,
    *,
    columns: Mapping[str, str] | Sequence[str] = (),
    image_key: str | None = None,
    augment: bool = False,
    nan_policy: str = "raise",
    fill_value: float = 0.0,
) -> SurveyDataset:
    """A :class:`SurveyDataset` from an image file and a catalogue file (row ``i`` = image ``i``).

    Args:
        images_path: ``.npy``, ``.npz``, HDF5 or FITS cube (:func:`advrobust.data.io.load_images`).
        catalogue_path: FITS table, CSV, Parquet, ``.npz`` or HDF5 (default: the image file itself).
        columns: catalogue columns to use, as names or as ``{item name: column name}``, e.g.
            ``{"z_spec": "ZSPEC", "ebv": "EBV"}``.
        image_key: array / dataset / HDU holding the images (default: see :func:`load_images`).
        augment, nan_policy, fill_value: see :class:`SurveyDataset`.

    Raises:
        ValueError: a missing column (the message lists those present), a catalogue whose length
            differs from the number of images, NaN under ``nan_policy="raise"``.
    """
    images = load_images(images_path, key=image_key)
    mapping = dict(columns) if isinstance(columns, Mapping) else {name: name for name in columns}
    targets: dict[str, np.ndarray] = {}
    if mapping:
        catalogue = load_catalogue(catalogue_path if catalogue_path is not None else images_path)
        missing = [column for column in mapping.values() if column not in catalogue.columns]
        if missing:
            raise ValueError(
                f"catalogue has no column(s) {missing}; available: {', '.join(map(str, catalogue.columns))}"
            )
        if len(catalogue) != len(images):
            raise ValueError(f"catalogue has {len(catalogue)} rows but there are {len(images)} images")
        targets = {name: catalogue[column].to_numpy() for name, column in mapping.items()}
    return SurveyDataset(images, targets, augment=augment, nan_policy=nan_policy, fill_value=fill_value)
