"""Model registry (:func:`create`) and weight files (:func:`save`, :func:`load`).

:func:`create` is the one place a model's identity is recorded: it binds the keyword arguments (the
preset's, then the caller's) to the class's constructor, fills in the defaults, builds the model and
sets ``model.registry_name`` (the name it was called with) and ``model.config`` (every constructor
argument, in JSON form). No model class writes either by hand, so an argument added to a
constructor is saved and reloaded without further code.

A weight file is a safetensors file whose header metadata holds, under the key ``"advrobust"``, a
JSON object ``{"name": <registry name>, "kwargs": <constructor arguments>}``. :func:`load` rebuilds
the model with :func:`create` and copies the tensors in; nothing is ever unpickled. Files written
before ``create`` recorded the arguments have the same header and load unchanged.
"""
from __future__ import annotations

import inspect
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

__all__ = ["create", "available_models", "model_arguments", "save", "load"]

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


def _entry(name: str) -> tuple[Callable[..., LatentModel], dict[str, Any]]:
    """``(class, preset arguments)`` registered under ``name``.

    Raises:
        ValueError: unknown ``name``.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    return _REGISTRY[name]


def model_arguments(name: str) -> tuple[str, ...]:
    """The constructor arguments :func:`create` accepts for ``name`` (e.g. whether it takes ``image_size``).

    Raises:
        ValueError: unknown ``name``.
    """
    return tuple(inspect.signature(_entry(name)[0]).parameters)


def _bound_arguments(cls: Callable[..., LatentModel], given: dict[str, Any]) -> dict[str, Any]:
    """Every constructor argument of ``cls`` called with the keywords ``given``: ``given`` plus the
    defaults, in the signature's order (the keywords a ``**kwargs`` parameter collects are listed by name).

    Raises:
        TypeError: an argument the constructor does not take.
    """
    signature = inspect.signature(cls)
    try:
        bound = signature.bind(**given)
    except TypeError as err:
        raise TypeError(f"{cls.__name__}: {err}; it takes {', '.join(signature.parameters)}") from None
    bound.apply_defaults()
    arguments: dict[str, Any] = {}
    for key, value in bound.arguments.items():
        kind = signature.parameters[key].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            arguments.update(value)
        elif kind is not inspect.Parameter.VAR_POSITIONAL:  # only keywords are bound: *args stays empty
            arguments[key] = value
    return arguments


def _plain(value):
    """JSON form of the NumPy / torch scalars and arrays a caller may pass as constructor arguments."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"constructor argument {value!r} ({type(value).__name__}) cannot be stored as JSON")


def create(name: str, **kwargs: Any) -> LatentModel:
    """Build a model by name and record how it was built.

    Args:
        name: one of :func:`available_models`: ``"pasquet_inception"`` (Campagne 2021, Table A1),
            ``"campagne_cnn"`` (Campagne 2021, Table A2), ``"convnet"`` (Ćiprijanović et al. 2022,
            Table 1), ``"resnet18"`` (Ćiprijanović et al. 2022),
            ``"photoz_small"``, ``"morphology_small"``.
        **kwargs: constructor arguments of the model class, overriding the preset ones.

    Returns:
        The model, with ``registry_name`` set to ``name`` and ``config`` to every constructor
        argument (preset, given or default) in JSON form (tuples as lists, NumPy and torch scalars
        as Python numbers): ``create(name, **model.config)`` builds the same model.

    Raises:
        ValueError: unknown ``name``.
        TypeError: an argument the model's constructor does not take, or one that JSON cannot hold.

    Example:
        >>> model = create("pasquet_inception", fc_widths=(2000, 1096))
        >>> sum(p.numel() for p in model.parameters())
        48722852
        >>> model.registry_name, model.config["fc_widths"]
        ('pasquet_inception', [2000, 1096])
    """
    cls, preset = _entry(name)
    arguments = _bound_arguments(cls, {**preset, **kwargs})
    config = json.loads(json.dumps(arguments, default=_plain))
    model = cls(**config)  # built from what save() writes, so load() builds the same model
    model.registry_name = name
    model.config = config
    return model


def save(model: LatentModel, path: str | os.PathLike) -> None:
    """Write ``model``'s parameters and buffers to a safetensors file with its constructor arguments.

    The write is atomic (:func:`advrobust.atomic.atomic_path`): a process killed mid-save leaves the
    previous file intact.

    Raises:
        TypeError: ``model`` was not built by :func:`create` (it has no recorded name and arguments).
    """
    name = getattr(model, "registry_name", "")
    recorded = isinstance(getattr(model, "config", None), dict)
    if not isinstance(model, LatentModel) or name not in _REGISTRY or not recorded:
        raise TypeError(
            f"save() needs a model built by advrobust.models.create (which records its name and constructor "
            f"arguments), got {type(model).__name__}"
        )
    header = json.dumps({"name": name, "kwargs": model.config})
    tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={_METADATA_KEY: header})


#: header values (numbers, list entries) allowed per tensor of the file, plus a constant: every
#: argument that adds a module (an Inception cell's five widths, a layer's width) adds tensors
_VALUES_PER_TENSOR, _VALUES_SLACK = 4, 64


def _short(value, limit: int = 200) -> str:
    """``repr(value)`` cut to ``limit`` characters (a crafted header must not fill the error line)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _header_values(value) -> int:
    """Numbers and strings in a JSON value (lists and objects counted through)."""
    if isinstance(value, dict):
        return sum(_header_values(v) for v in value.values())
    if isinstance(value, list):
        return sum(_header_values(v) for v in value)
    return 1


def _expected_shapes(path, name: str, kwargs: dict, n_tensors: int) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer shapes of ``create(name, **kwargs)``, built on the meta device (no memory),
    after a bound on the header's size against the file's ``n_tensors`` tensors: a header asking for
    thousands of modules (each a Python object even on the meta device) is refused before building."""
    import torch

    if name not in _REGISTRY or not isinstance(kwargs, dict):
        raise ValueError(f"{path}: the header names {_short(name)} with arguments {_short(kwargs)}; expected a "
                         f"model of {', '.join(available_models())} and a JSON object of arguments")
    values = _header_values(kwargs)
    if values > _VALUES_PER_TENSOR * n_tensors + _VALUES_SLACK:
        raise ValueError(f"{path}: the header's arguments hold {values} values for a file of {n_tensors} tensors "
                         f"(at most {_VALUES_PER_TENSOR} per tensor + {_VALUES_SLACK}): a model far larger than "
                         "the file; refused before building it")
    try:
        with torch.device("meta"):
            skeleton = create(name, **kwargs)
    except (TypeError, ValueError, OverflowError, RuntimeError) as err:
        raise ValueError(f"{path}: the header's arguments do not build {name}: {_short(str(err))}") from None
    return {key: tuple(value.shape) for key, value in skeleton.state_dict().items()}


def _check_tensors(path, name: str, kwargs: dict, found: dict, expected: dict) -> None:
    """ValueError naming (at most 5 of each) the missing, unexpected and differently shaped tensors."""
    if found == expected:
        return
    missing = sorted(set(expected) - set(found))[:5]
    unexpected = sorted(set(found) - set(expected))[:5]
    differ = [f"{key}: file {found[key]} vs model {expected[key]}"
              for key in expected if key in found and found[key] != expected[key]][:5]
    raise ValueError(f"{path}: tensors do not match {name}{_short(kwargs)}: missing {missing}, unexpected "
                     f"{unexpected}, shapes that differ {differ}")


def _file_dtype(path, state: dict):
    """The one floating dtype of the file's tensors (None: no floating tensor).

    Raises:
        ValueError: floating tensors of several dtypes (a model is built in one).
    """
    dtypes = sorted({str(t.dtype) for t in state.values() if t.is_floating_point()})
    if len(dtypes) > 1:
        raise ValueError(f"{path}: the tensors mix the dtypes {dtypes}; save a model in one dtype "
                         "(model.float() or model.double() first)")
    return next((t.dtype for t in state.values() if t.is_floating_point()), None)


def load(path: str | os.PathLike, device: str = "cpu", *, allow_nonfinite: bool = False) -> LatentModel:
    """Rebuild a model written by :func:`save` (no unpickling), on ``device``, in the dtype it was
    saved in (float32, float64, float16, ...).

    The header's size is bounded by the file's tensor count, then its model is built on the meta
    device (no memory) and its parameter shapes are compared with the file's tensors, so a small
    file whose header asks for a huge model is refused before anything is allocated.

    Args:
        allow_nonfinite: load weights holding NaN/Inf (default: refused; such a model's every output
            is NaN, or silently wrong).

    Raises:
        ValueError: the file has no advrobust header, its header does not build a model (or asks for
            one far larger than the file), its tensors do not match the model (names, shapes, dtypes
            mixed), or they hold NaN/Inf without ``allow_nonfinite``.
    """
    with safe_open(os.fspath(path), framework="pt", device=device) as handle:
        metadata = handle.metadata() or {}
        if _METADATA_KEY not in metadata:
            raise ValueError(f"{path}: not an advrobust model file (no {_METADATA_KEY!r} metadata)")
        try:
            header = json.loads(metadata[_METADATA_KEY])
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: the {_METADATA_KEY!r} header is not JSON: {err}") from None
        if not isinstance(header, dict) or "name" not in header:
            raise ValueError(f"{path}: the {_METADATA_KEY!r} header must be {{'name': ..., 'kwargs': ...}}, "
                             f"got {_short(header)}")
        name, kwargs = header["name"], header.get("kwargs", {})
        keys = list(handle.keys())
        expected = _expected_shapes(path, name, kwargs, len(keys))
        _check_tensors(path, name, kwargs, {key: tuple(handle.get_slice(key).get_shape()) for key in keys}, expected)
        state = {key: handle.get_tensor(key) for key in keys}
    bad = [key for key, t in state.items() if t.is_floating_point() and not bool(t.isfinite().all())]
    if bad and not allow_nonfinite:
        raise ValueError(f"{path}: {len(bad)} tensors hold NaN/Inf weights ({', '.join(bad[:3])}"
                         f"{', ...' if len(bad) > 3 else ''}): a broken model, refused (pass "
                         "allow_nonfinite=True to load it anyway)")
    model = create(name, **kwargs)
    dtype = _file_dtype(path, state)
    if dtype is not None:
        model = model.to(dtype)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # anything the shape check above cannot see
        raise ValueError(f"{path}: tensors do not match {name}{_short(kwargs)}: {_short(str(err))}") from None
    return model.to(device)
