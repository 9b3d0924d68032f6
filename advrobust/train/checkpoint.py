"""Training checkpoints: one safetensors file, written atomically, holding everything a resumed run
needs to continue bit for bit.

Tensors (safetensors, no pickle): the model's state (``model.<name>``), the optimiser's per-parameter
state (``optim.<param index>.<name>``), the CPU RNG state and the trainer's generator state
(``rng.*``, uint8), the CUDA RNG state of each device when CUDA is in use. Everything else (epoch,
optimiser hyper-parameters, scheduler and early-stopping state, history) is JSON in the header's
metadata under ``"advrobust.train"``. A kill during the write leaves the previous checkpoint whole
(:func:`advrobust.atomic.atomic_path`).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Tuple

from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from advrobust.atomic import atomic_path

__all__ = ["save_checkpoint", "load_checkpoint", "optimizer_to_flat", "optimizer_from_flat"]

_META_KEY = "advrobust.train"


def optimizer_to_flat(state_dict: dict) -> Tuple[Dict[str, Tensor], dict]:
    """An optimiser ``state_dict`` as (tensors keyed ``"<param>.<name>"``, JSON-able rest)."""
    tensors, plain = {}, {}
    for pid, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"{pid}.{name}"] = value.detach().cpu().contiguous().clone()
            else:
                plain.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "plain_state": plain}


def optimizer_from_flat(tensors: Dict[str, Tensor], rest: dict) -> dict:
    """Inverse of :func:`optimizer_to_flat` (tensors on the CPU; ``load_state_dict`` moves them)."""
    state: Dict[int, dict] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for pid, entries in rest["plain_state"].items():
        state.setdefault(int(pid), {}).update(entries)
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(path: str | os.PathLike, tensors: Dict[str, Tensor], meta: Dict[str, Any]) -> None:
    """Write ``tensors`` (names -> tensors, moved to the CPU) and ``meta`` (JSON-able) atomically."""
    flat = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(flat, tmp, metadata={_META_KEY: json.dumps(meta)})


def load_checkpoint(path: str | os.PathLike) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    """``(tensors, meta)`` of a file written by :func:`save_checkpoint`.

    Raises:
        ValueError: the file is a safetensors file without the trainer's metadata.
    """
    with safe_open(os.fspath(path), framework="pt") as f:
        meta = (f.metadata() or {}).get(_META_KEY)
        if meta is None:
            raise ValueError(f"load_checkpoint: {os.fspath(path)!r} is not a training checkpoint (no "
                             f"{_META_KEY!r} metadata); model weight files load with advrobust.models.load")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return tensors, json.loads(meta)
