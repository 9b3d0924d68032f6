"""The model of ``--model``: a weight file, or (``advrobust train``) a registry name."""
from __future__ import annotations

import hashlib
import os


def load_model(spec: str, device, *, registry: bool = False, kwargs: dict | None = None):
    """The model of ``--model``: a weight file written by :func:`advrobust.models.save`, or (with
    ``registry``) a name of :func:`advrobust.models.available_models` built with ``kwargs`` (the
    config's ``[model]`` table), on ``device``.

    Raises:
        FileNotFoundError: neither a file nor (with ``registry``) a model name.
        ValueError: a file that is not an advrobust model, ``kwargs`` with a weight file, or
            ``kwargs`` the model's constructor rejects.
    """
    from advrobust import models

    if registry and not os.path.exists(spec) and spec in models.available_models():
        try:
            return models.create(spec, **(kwargs or {})).to(device)
        except TypeError as err:
            raise ValueError(f"[model] table of --config: {err}") from None
    if kwargs:
        raise ValueError(f"the config's [model] table builds a model by name; --model {spec} is a weight file "
                         "whose header already fixes the model")
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
