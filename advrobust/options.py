"""How an error message names an option: as the Python argument (``id_column=``) or, inside a
command, as its command-line flag (``--id-column``).

Library code writes ``option("id_column")`` in its messages; the command line runs each command
under :func:`spelled_as` with its flags, so a user of ``advrobust train`` is never told to pass a
Python argument that no command accepts.

Example:
    >>> option("nan_policy")
    'nan_policy='
    >>> option("nan_policy", "reject")
    "nan_policy='reject'"
    >>> with spelled_as({"nan_policy": "--nan-policy"}):
    ...     option("nan_policy", "reject")
    '--nan-policy reject'
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Mapping

__all__ = ["option", "spelled_as"]

_SPELLING: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar("advrobust_option_spelling",
                                                                                     default=None)


_UNSET = object()


def option(name: str, value=_UNSET, *, flag_value: str | None = None) -> str:
    """``name`` (with ``value``, when given) as the current caller spells it: ``--flag value`` under
    :func:`spelled_as` (``flag_value`` instead of ``str(value)`` when given; ``flag_value=""``: the
    flag alone, e.g. a switch; ``--flag=value`` for a value starting with ``-``, which argparse would
    take for an option), else ``name=value`` (the value's repr; a placeholder such as ``"<name>"`` as it is)."""
    spelling = _SPELLING.get()
    if spelling is not None and name in spelling:
        if value is _UNSET:
            return spelling[name]
        text = str(value) if flag_value is None else flag_value
        if not text:
            return spelling[name]
        return f"{spelling[name]}={text}" if text.startswith("-") else f"{spelling[name]} {text}"
    if value is _UNSET:
        return f"{name}="
    placeholder = isinstance(value, str) and value.startswith("<") and value.endswith(">")
    return f"{name}={value}" if placeholder else f"{name}={value!r}"


@contextlib.contextmanager
def spelled_as(flags: Mapping[str, str]) -> Iterator[None]:
    """Within the block, :func:`option` names each Python argument of ``flags`` by its flag."""
    token = _SPELLING.set(dict(flags))
    try:
        yield
    finally:
        _SPELLING.reset(token)
