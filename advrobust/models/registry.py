"""Model registry (:func:`create`) and weight files (:func:`save`, :func:`load`).

A weight file is a safetensors file whose header metadata holds, under the key ``"advrobust"``, a
JSON object ``{"name": <registry name>, "kwargs": <constructor arguments>}``. :func:`load` rebuilds
the model with :func:`create` and copies the tensors in; nothing is ever unpickled.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable

from safetensors import safe_open
from safetensors.torch import save_file

from advrobust.atomic import atomic_path
from advrobust.models.base import LatentModel
from advrobust.models.cnn import CampagneCNN, SmallPhotozCNN
from advrobust.models.convnet import ConvNet
from advrobust.models.inception import PasquetInception
from advrobust.models.resnet import ResNet18

__all__ = ["create", "available_models", "save", "load"]

_METADATA_KEY = "advrobust"

#: name -> (class, preset constructor arguments that ``create``'s keyword arguments override)
_REGISTRY: dict[str, tuple[Callable[..., LatentModel], dict[str, Any]]] = {
    "pasquet_inception": (PasquetInception, {}),
    "campagne_cnn": (CampagneCNN, {}),
    "convnet": (ConvNet, {}),
    "resnet18": (ResNet18, {}),
    # Small, fast models for tests and the CPU demo.
    "photoz_small": (SmallPhotozCNN, {}),
    "morphology_small": (ConvNet, {"channels": (8, 16, 16), "latent_dim": 32}),
}


def available_models() -> list[str]:
    """Names accepted by :func:`create`."""
    return sorted(_REGISTRY)


def create(name: str, **kwargs: Any) -> LatentModel:
    """Build a model by name.

    Args:
        name: one of :func:`available_models`: ``"pasquet_inception"`` (Campagne 2021, Table A1),
            ``"campagne_cnn"`` (Campagne 2021, Table A2), ``"convnet"`` (Ćiprijanović et al. 2022,
            Table 1), ``"resnet18"`` (Ćiprijanović et al. 2022),
            ``"photoz_small"``, ``"morphology_small"``.
        **kwargs: constructor arguments of the model class, overriding the preset ones.

    Returns:
        The model, with ``registry_name`` set to ``name``.

    Raises:
        ValueError: unknown ``name``.
        TypeError: an argument the model's constructor does not take.

    Example:
        >>> model = create("pasquet_inception", fc_widths=(2000, 1096))
        >>> sum(p.numel() for p in model.parameters())
        48722852
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    cls, preset = _REGISTRY[name]
    model = cls(**{**preset, **kwargs})
    model.registry_name = name
    return model


def _plain(value):
    """JSON form of the NumPy / torch scalars and arrays a caller may pass as constructor arguments."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"constructor argument {value!r} ({type(value).__name__}) cannot be stored as JSON")


def save(model: LatentModel, path: str | os.PathLike) -> None:
    """Write ``model``'s parameters and buffers to a safetensors file with its constructor arguments.

    The write is atomic (:func:`advrobust.atomic.atomic_path`): a process killed mid-save leaves the
    previous file intact.

    Raises:
        TypeError: ``model`` is not an advrobust model (it has no ``config`` or registry name).
    """
    name = getattr(model, "registry_name", "")
    if not isinstance(model, LatentModel) or name not in _REGISTRY:
        raise TypeError(
            f"save() needs a model built by advrobust.models.create, got {type(model).__name__}"
        )
    header = json.dumps({"name": name, "kwargs": model.config}, default=_plain)
    tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={_METADATA_KEY: header})


def load(path: str | os.PathLike, device: str = "cpu") -> LatentModel:
    """Rebuild a model written by :func:`save` (no unpickling), on ``device``.

    Raises:
        ValueError: the file has no advrobust header, or its tensors do not match the model.
    """
    with safe_open(os.fspath(path), framework="pt", device=device) as handle:
        metadata = handle.metadata() or {}
        if _METADATA_KEY not in metadata:
            raise ValueError(f"{path}: not an advrobust model file (no {_METADATA_KEY!r} metadata)")
        header = json.loads(metadata[_METADATA_KEY])
        state = {key: handle.get_tensor(key) for key in handle.keys()}
    model = create(header["name"], **header["kwargs"])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # missing / unexpected keys or shapes that differ
        raise ValueError(f"{path}: tensors do not match {header['name']}{header['kwargs']}: {err}") from None
    return model.to(device)
