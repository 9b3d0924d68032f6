"""The model of ``--model``: a weight file, or (``advrobust train``) a registry name built for the
data's bands and stamp size, with constructor arguments from ``--model-arg NAME=VALUE`` or the
config's ``[model]`` table."""
from __future__ import annotations

import argparse
import hashlib
import os
import tomllib


def model_arg(text: str) -> tuple:
    """``--model-arg NAME=VALUE`` -> ``(NAME, VALUE)``, VALUE read as a TOML value (``128``, ``0.5``,
    ``true``, ``[8, 16, 16]``, ``"text"``), else kept as text."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (e.g. latent_dim=128), got {text!r}")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return name.strip(), parsed


class ModelArgs(argparse.Action):
    """``--model-arg`` repeated: the list of its ``(NAME, VALUE)`` pairs (an append that also works
    under :class:`advrobust.cli.parser.CommandParser`, whose namespace starts with a marker)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        given = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, (list(given) if isinstance(given, list) else []) + [values])


def is_registry_name(spec: str) -> bool:
    """``spec`` names a model of :func:`advrobust.models.available_models` (and no file of that name exists)."""
    from advrobust import models

    return not os.path.exists(spec) and spec in models.available_models()


def data_geometry(name: str, image_shape) -> dict:
    """The constructor arguments of registry model ``name`` that the data fix: ``in_channels`` (C)
    and ``image_size`` (H, for square stamps ``(C, H, H)``), where the constructor takes them.

    Raises:
        ValueError: stamps that are not square for a model that takes ``image_size``.
    """
    from advrobust.models import model_arguments

    bands, height, width = (int(v) for v in image_shape)
    accepted = model_arguments(name)
    geometry = {"in_channels": bands} if "in_channels" in accepted else {}
    if "image_size" in accepted:
        if height != width:
            raise ValueError(f"--model {name} takes square stamps; --data has {height}x{width} pixels (cut "
                             "them square, or train resnet18, which takes any H x W)")
        geometry["image_size"] = height
    return geometry


def load_model(spec: str, device, *, registry: bool = False, kwargs: dict | None = None, image_shape=None):
    """The model of ``--model``: a weight file written by :func:`advrobust.models.save`, or (with
    ``registry``) a name of :func:`advrobust.models.available_models` built with ``kwargs``
    (``--model-arg`` / the config's ``[model]`` table) over the geometry of the data's stamps
    ``image_shape`` ``(C, H, W)`` (:func:`data_geometry`; ``kwargs`` win), on ``device``.

    Raises:
        FileNotFoundError: neither a file nor (with ``registry``) a model name.
        ValueError: a file that is not an advrobust model, ``kwargs`` with a weight file, ``kwargs``
            the model's constructor rejects, or stamps the architecture cannot take (its limit named).
    """
    from advrobust import models

    if registry and is_registry_name(spec):
        geometry = data_geometry(spec, image_shape) if image_shape is not None else {}
        try:
            return models.create(spec, **{**geometry, **(kwargs or {})}).to(device)
        except TypeError as err:
            raise ValueError(f"--model-arg / [model] table of --config: {err}") from None
        except ValueError as err:
            if image_shape is None:
                raise ValueError(f"--model-arg / [model] table of --config: {err}") from None
            raise ValueError(f"--model {spec} cannot take the stamps of --data, {tuple(image_shape)} (C, H, W): "
                             f"{err}") from None
    if kwargs:
        raise ValueError(f"--model-arg and the config's [model] table build a model by name; --model {spec} is a "
                         "weight file whose header already fixes the model")
    if not os.path.exists(spec):
        names_ = f" nor a model name ({', '.join(models.available_models())})" if registry else ""
        raise FileNotFoundError(f"--model {spec}: no such file{names_}")
    try:
        return models.load(spec, device=str(device))
    except ValueError:
        raise
    except Exception as err:  # safetensors' own errors: not a safetensors file at all
        raise ValueError(f"--model {spec}: not an advrobust model file (safetensors with an 'advrobust' "
                         f"header): {err}") from err


def is_photoz(model) -> bool:
    """The model predicts redshifts (:class:`~advrobust.models.base.PhotozModel`: inputs image and E(B-V))."""
    from advrobust.models.base import PhotozModel

    return isinstance(model, PhotozModel)


def sha256(path: str) -> str:
    """Hex SHA-256 of a file (the model file's checksum in reports and scan manifests), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
