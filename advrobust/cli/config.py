"""Configuration files: ``--config FILE`` (TOML, read with :mod:`tomllib`) of the commands that read a survey.

The keys are the long option names, with dashes or underscores (``batch-size = 64`` or
``batch_size = 64``); options given on the command line override the file
(:class:`advrobust.cli.parser.CommandParser`). A ``[model]`` table holds model constructor arguments
where the command takes them (``advrobust train``: ``name`` is the registry name, as TOML cannot hold
both a key ``model`` and a table ``[model]``; the other keys go to the constructor). Example
``train.toml``::

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

A value is checked against its option (the public attributes of the argparse action the option was
made with: ``nargs``, ``type``, ``choices``) and converted as the command line would convert it.
"""
from __future__ import annotations

import argparse
import os
import tomllib
from typing import Any, Mapping, Sequence, Tuple

from advrobust.cli.argtypes import floats, names


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _converted(kind, value: Any, wrong) -> Any:
    """``value`` converted by the option's ``type`` ``kind``; ``wrong(what)`` builds the error."""
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("an integer")
        return value
    if kind is float:
        if not _is_number(value):
            raise wrong("a number")
        return float(value)
    if kind is floats:
        if isinstance(value, str):
            return floats(value)
        if _is_number(value):
            return [float(value)]
        if isinstance(value, list) and value and all(_is_number(v) for v in value):
            return [float(v) for v in value]
        raise wrong("a number or a list of numbers")
    if kind is names:
        if isinstance(value, str):
            return names(value)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [v.strip() for v in value if v.strip()]
        raise wrong("a comma-separated string or a list of strings")
    if kind is None:
        if not isinstance(value, str):
            raise wrong("a string")
        return value
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):  # any other converter: the text
        raise wrong("a string or a number")
    return kind(str(value))


def config_value(path: str, key: str, value: Any, action: argparse.Action) -> Any:
    """``value`` of config ``key`` checked against its option ``action`` and converted like the command line.

    Raises:
        ValueError: a value of the wrong kind, or not among the option's choices (the key is named).
    """
    def wrong(what: str):
        return ValueError(f"config {path}: key {key!r} must be {what}, got {value!r} ({type(value).__name__})")

    if action.nargs == 0:  # a flag (store_true / store_false)
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    value = _converted(action.type, value, wrong)
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"config {path}: key {key!r} must be one of {', '.join(map(str, action.choices))}, "
                         f"got {value!r}")
    return value


def _load_toml(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--config {path}: no such file")
    with open(path, "rb") as handle:
        try:
            return tomllib.load(handle)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"config {path}: not valid TOML: {err}") from None


def read_config(path: str, options: Mapping[str, argparse.Action],
                tables: Sequence[str] = ()) -> Tuple[dict, dict]:
    """``(values, tables)`` of the TOML file ``path``: ``{dest: value}`` for the keys, each checked
    against ``options[dest]`` and converted as the command line would, and ``{table name: dict}``
    for the allowed ``tables``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not TOML, an unknown key or table, a value of the wrong type (the key is named).
    """
    values, found_tables = {}, {}
    for key, value in _load_toml(path).items():
        if isinstance(value, dict):
            if key not in tables:
                allowed = f"; the tables allowed are [{'], ['.join(tables)}]" if tables else "; it takes no tables"
                raise ValueError(f"config {path}: unknown table [{key}]{allowed}")
            found_tables[key] = value
            continue
        dest = key.replace("-", "_")
        if dest not in options:
            known = ", ".join(sorted(a.option_strings[-1].lstrip("-") for a in options.values()))
            raise ValueError(f"config {path}: unknown key {key!r}; the keys are: {known}")
        values[dest] = config_value(path, key, value, options[dest])
    return values, found_tables
