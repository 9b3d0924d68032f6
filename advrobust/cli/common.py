"""What the commands share: options read from a TOML file, the user's survey data, the model, the
device, and small argument parsers.

Configuration files (``--config FILE``, read with :mod:`tomllib`): the keys are the long option
names, with dashes or underscores (``batch-size = 64`` or ``batch_size = 64``); options given on the
command line override the file. A ``[model]`` table holds model constructor arguments where the
command takes them (``advrobust train``: ``name`` is the registry name, as TOML cannot hold both a key
``model`` and a table ``[model]``; the other keys go to the constructor). Example ``train.toml``::

    data = "survey.h5"
    target = "label"
    out = "model.safetensors"
    epochs = 20
    defense = "adversarial"
    attack = "fgsm"
    eps-sky = 2.0

    [model]
    name = "morphology_small"
    latent_dim = 64
"""
from __future__ import annotations

import argparse
import hashlib
import os
import tomllib
from typing import Any, Dict, Sequence, Tuple

import numpy as np

#: the item names under which the commands put the target column in the :class:`SurveyDataset`
LABEL, REDSHIFT, EBV = "label", "z_spec", "ebv"

_UNSET = object()


# ----------------------------------------------------------------------------------- small parsers
def floats(text: str) -> list:
    """``"1,2.5"`` -> ``[1.0, 2.5]`` (an argparse ``type``)."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def names(text: str) -> list:
    """``"fgsm, pgd"`` -> ``["fgsm", "pgd"]`` (an argparse ``type``; empty items are dropped)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def sha256(path: str) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------ options and config
def _options(parser: argparse.ArgumentParser) -> Dict[str, argparse.Action]:
    """dest -> action of every option a config file may set (not -h, not --config)."""
    return {a.dest: a for a in parser._actions if a.option_strings and a.dest not in ("help", "config")}


def _config_value(path: str, key: str, value: Any, action: argparse.Action) -> Any:
    """``value`` of config ``key`` checked against the option's kind and converted like the command line."""
    def wrong(what: str):
        return ValueError(f"config {path}: key {key!r} must be {what}, got {value!r} ({type(value).__name__})")

    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    kind = action.type
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("an integer")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong("a number")
        value = float(value)
    elif kind is floats:
        if isinstance(value, str):
            value = floats(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [float(value)]
        elif isinstance(value, list) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                       for v in value):
            value = [float(v) for v in value]
        else:
            raise wrong("a number or a list of numbers")
    elif kind is names:
        if isinstance(value, str):
            value = names(value)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = [v.strip() for v in value if v.strip()]
        else:
            raise wrong("a comma-separated string or a list of strings")
    elif kind is None:
        if not isinstance(value, str):
            raise wrong("a string")
    else:  # any other converter takes the command line's text
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise wrong("a string or a number")
        value = kind(str(value))
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"config {path}: key {key!r} must be one of {', '.join(map(str, action.choices))}, "
                         f"got {value!r}")
    return value


def read_config(path: str, parser: argparse.ArgumentParser, tables: Sequence[str] = ()) -> Tuple[dict, dict]:
    """``(options, tables)`` of a TOML config: ``{dest: value}`` converted as the command line would,
    and ``{table name: dict}`` for the allowed ``tables``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not TOML, an unknown key or table, a value of the wrong type (the key is named).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--config {path}: no such file")
    with open(path, "rb") as handle:
        try:
            raw = tomllib.load(handle)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"config {path}: not valid TOML: {err}") from None
    actions = _options(parser)
    options, found_tables = {}, {}
    for key, value in raw.items():
        if isinstance(value, dict):
            if key not in tables:
                allowed = f"; the tables allowed are [{'], ['.join(tables)}]" if tables else "; it takes no tables"
                raise ValueError(f"config {path}: unknown table [{key}]{allowed}")
            found_tables[key] = value
            continue
        dest = key.replace("-", "_")
        if dest not in actions:
            known = ", ".join(sorted(a.option_strings[-1].lstrip("-") for a in actions.values()))
            raise ValueError(f"config {path}: unknown key {key!r}; the keys are: {known}")
        options[dest] = _config_value(path, key, value, actions[dest])
    return options, found_tables


def parse(parser: argparse.ArgumentParser, argv: Sequence[str], *, required: Sequence[str] = (),
          tables: Sequence[str] = ()) -> Tuple[argparse.Namespace, dict]:
    """Parse ``argv`` with the values of ``--config`` (if given) under the command line's.

    ``parser`` must have a ``--config`` option and no ``required=True`` option: ``required`` names the
    dests that the command line or the config must give. Of a mutually exclusive group, an option
    on the command line also drops the others' config values.

    Returns:
        ``(args, tables)``: the namespace and the config's ``tables`` (``{}`` for those absent).

    Raises:
        SystemExit: a usage error (argparse's, or a required option missing).
        ValueError: see :func:`read_config`.
    """
    actions = _options(parser)
    namespace = argparse.Namespace(**{dest: _UNSET for dest in actions}, config=_UNSET)
    args = parser.parse_args(list(argv), namespace=namespace)
    given = {dest for dest in actions if getattr(args, dest) is not _UNSET}
    config, found = {}, {}
    if args.config is not _UNSET and args.config is not None:
        config, found = read_config(args.config, parser, tables)
    else:
        args.config = None
    for group in parser._mutually_exclusive_groups:
        dests = [a.dest for a in group._group_actions]
        if any(d in given for d in dests):
            for d in dests:
                config.pop(d, None)
        elif sum(d in config for d in dests) > 1:
            both = [f"{d.replace('_', '-')}" for d in dests if d in config]
            raise ValueError(f"config {args.config}: keys {both} exclude each other; give one")
    for dest, action in actions.items():
        if dest not in given:
            setattr(args, dest, config.get(dest, action.default))
    missing = [actions[d].option_strings[-1] for d in required if getattr(args, d) is None]
    if missing:
        parser.error(f"the following arguments are required (on the command line or in --config): "
                     f"{', '.join(missing)}")
    return args, found


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML file of options (keys: the long option names, dashes or "
                                         "underscores); the command line overrides it")


# ------------------------------------------------------------------------------------------ device
def device(name: str):
    """``torch.device(name)`` for ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        ValueError: another name, or CUDA asked for where no CUDA device is visible.
    """
    import torch

    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {name!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {name!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: no CUDA device is visible (torch.cuda.is_available() is False)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return dev


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")


# ------------------------------------------------------------------------------------------- model
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
    from advrobust.models.base import PhotozModel

    return isinstance(model, PhotozModel)


# -------------------------------------------------------------------------------------------- data
def add_data_arguments(parser: argparse.ArgumentParser, *, target_help: str) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--data", help="image cube (N, C, H, W): .npy, .npz, HDF5 or FITS (streamed)")
    data.add_argument("--key", help="array / dataset / HDU of the images in --data")
    data.add_argument("--catalog", help="catalogue (FITS, CSV, Parquet, npz, HDF5); default: the --data file")
    data.add_argument("--catalog-key", help="FITS table or HDF5 group of the catalogue")
    data.add_argument("--id-column", help="catalogue column of object ids, joined exactly to --image-ids "
                      "(default: rows are joined by position)")
    data.add_argument("--image-ids", help="array of the images' ids in --data (default: --id-column's name)")
    data.add_argument("--target", help=target_help)
    data.add_argument("--ebv-column", default=EBV, help="catalogue column of E(B-V), for photo-z models (default ebv)")
    data.add_argument("--nan-policy", default="raise", choices=("raise", "reject", "fill"),
                      help="objects with NaN / Inf pixels or values: raise (default), reject them, or fill "
                           "bad pixels with 0")


def open_survey(args: argparse.Namespace, *, photoz: bool, n_classes: int | None = None):
    """The :class:`~advrobust.data.SurveyDataset` of the data options: items ``image``, the target
    column as ``label`` (classifier; int64 in ``[0, n_classes)``) or ``z_spec`` (photo-z), and
    ``ebv`` for photo-z models.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a missing column or key (the message lists those present), labels that are not
            whole numbers in ``[0, n_classes)``, and :func:`~advrobust.data.load_survey`'s errors.
    """
    from advrobust.data import load_survey

    if not os.path.exists(args.data):
        raise FileNotFoundError(f"--data {args.data}: no such file")
    if args.catalog is not None and not os.path.exists(args.catalog):
        raise FileNotFoundError(f"--catalog {args.catalog}: no such file")
    columns = {}
    if args.target is not None:
        columns[REDSHIFT if photoz else LABEL] = args.target
    if photoz:
        columns[EBV] = args.ebv_column
    dataset = load_survey(args.data, args.catalog, columns=columns, image_key=args.key,
                          catalogue_key=args.catalog_key, id_column=args.id_column, image_ids=args.image_ids,
                          nan_policy=args.nan_policy)
    if LABEL in dataset.values:
        labels = dataset.values[LABEL]
        if labels.dtype.kind == "f":
            if not np.all(labels == np.round(labels)):
                raise ValueError(f"--target {args.target}: a classifier's labels must be whole numbers "
                                 f"(class indices), got e.g. {labels[labels != np.round(labels)][:3].tolist()}")
            labels = dataset.values[LABEL] = labels.astype(np.int64)
        if n_classes is not None and labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise ValueError(f"--target {args.target}: labels must be class indices in [0, {n_classes}) for this "
                             f"model, got values in [{labels.min()}, {labels.max()}]")
    return dataset


def fields(photoz: bool) -> tuple:
    """Item keys ``(x, y, *extra)`` of :func:`open_survey`'s dataset for the Trainer."""
    return ("image", REDSHIFT, EBV) if photoz else ("image", LABEL)


def read_rows(dataset, n: int | None = None) -> Tuple[np.ndarray, Dict[str, np.ndarray], np.ndarray]:
    """The first ``n`` objects (all by default): ``(images (n, C, H, W) float32, {item: (n,)}, ids (n,))``;
    ids are the catalogue's (``--id-column``) or the rows of the image file."""
    n = len(dataset) if n is None else min(int(n), len(dataset))
    if n <= 0:
        raise ValueError("no objects to process (empty data, or all rejected by --nan-policy)")
    rows = dataset.indices[:n]
    values = {name: column[rows] for name, column in dataset.values.items()}
    ids = dataset.ids[rows] if dataset.ids is not None else rows.astype(np.int64)
    return dataset.read_images(0, n), values, ids


def add_eps_arguments(group, *, default_sky: float | None = 2.0, measured_on: str = "the images") -> None:
    """``--eps`` (image units) and ``--eps-sky`` (sky sigmas of each band), mutually exclusive."""
    strength = group.add_mutually_exclusive_group()
    strength.add_argument("--eps", type=float, help="L-inf radius in image units, the same in every band")
    strength.add_argument("--eps-sky", type=float, default=default_sky,
                          help="L-inf radius in sky-noise sigmas, K in every band: band b moves by at most K x its "
                               f"own sky sigma, measured on {measured_on} (advrobust.data.sky_sigma; the attacks' "
                               "unit, so pgd_l2's L2 radius is in those units too)"
                               + (f" (default {default_sky})" if default_sky is not None else ""))


def resolve_eps(args: argparse.Namespace, images: np.ndarray):
    """``(eps, unit, sky)`` from ``--eps`` / ``--eps-sky``: ``--eps E`` gives ``(E, None, sky)`` (image
    units); ``--eps-sky K`` gives ``(K, sky as a tuple, sky)`` (K sky sigmas in every band); neither
    gives ``(None, None, sky)``. ``sky``: per-band sky sigma ``(C,)`` of ``images``, or None.

    The sky sigma is measured on ``images`` whenever it can be (the report states eps in both
    units); with ``--eps-sky`` a failure to measure it is an error.
    """
    from advrobust.data import sky_sigma

    eps_sky = args.eps_sky if args.eps is None else None
    try:
        sky = sky_sigma(images)
    except ValueError:
        if eps_sky is not None:
            raise
        sky = None
    if args.eps is not None:
        return float(args.eps), None, sky
    if eps_sky is None:
        return None, None, sky
    return float(eps_sky), tuple(float(s) for s in sky), sky
