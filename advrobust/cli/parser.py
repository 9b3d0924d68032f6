"""The parser of the commands that read a survey: argparse's, plus ``--config FILE`` under the
command line, options the command line or the config must give, and the config's tables.

:class:`CommandParser` records every option as it is added (the :class:`argparse.Action` that
``add_argument`` returns, and the mutually exclusive groups), so a config file is checked against the
options without reading argparse's private state.
"""
from __future__ import annotations

import argparse
from typing import Dict, List, Sequence

from advrobust.cli.config import read_config

_UNSET = object()


class _Group:
    """An argument group (or mutually exclusive group) of a :class:`CommandParser` that records its options."""

    def __init__(self, group, owner: "CommandParser", exclusive: List[str] | None = None) -> None:
        self._group, self._owner, self._exclusive = group, owner, exclusive

    def add_argument(self, *flags, **kwargs) -> argparse.Action:
        action = self._group.add_argument(*flags, **kwargs)
        self._owner._record(action, self._exclusive)
        return action

    def add_mutually_exclusive_group(self, **kwargs) -> "_Group":
        return self._owner._exclusive_group(self._group.add_mutually_exclusive_group(**kwargs))


class CommandParser:
    """An :class:`argparse.ArgumentParser` (``add_argument``, ``add_argument_group``,
    ``add_mutually_exclusive_group``, ``parse_args``, ``error``, ``format_help``) with ``--config``.

    Args:
        prog, description: as argparse's (the description is shown raw).
        required: dests that the command line or the config must give (no option is ``required=True``).
        tables: the config's allowed tables; :meth:`parse_args` puts them, ``{name: dict}``, in
            ``args.config_tables``.
    """

    def __init__(self, prog: str, description: str | None = None, *, required: Sequence[str] = (),
                 tables: Sequence[str] = ()) -> None:
        self._parser = argparse.ArgumentParser(prog=prog, description=description,
                                               formatter_class=argparse.RawDescriptionHelpFormatter)
        self.required, self.tables = tuple(required), tuple(tables)
        self.options: Dict[str, argparse.Action] = {}  # dest -> action of every option a config may set
        self.exclusive: List[List[str]] = []  # the dests of each mutually exclusive group
        self._parser.add_argument("--config", help="TOML file of options (keys: the long option names, dashes or "
                                                   "underscores); the command line overrides it")

    def _record(self, action: argparse.Action, exclusive: List[str] | None) -> None:
        self.options[action.dest] = action
        if exclusive is not None:
            exclusive.append(action.dest)

    def _exclusive_group(self, group) -> _Group:
        dests: List[str] = []
        self.exclusive.append(dests)
        return _Group(group, self, dests)

    def add_argument(self, *flags, **kwargs) -> argparse.Action:
        action = self._parser.add_argument(*flags, **kwargs)
        self._record(action, None)
        return action

    def add_argument_group(self, *args, **kwargs) -> _Group:
        return _Group(self._parser.add_argument_group(*args, **kwargs), self)

    def add_mutually_exclusive_group(self, **kwargs) -> _Group:
        return self._exclusive_group(self._parser.add_mutually_exclusive_group(**kwargs))

    def error(self, message: str):
        self._parser.error(message)

    def format_help(self) -> str:
        return self._parser.format_help()

    def parse_args(self, argv: Sequence[str]) -> argparse.Namespace:
        """Parse ``argv`` with the values of ``--config`` (if given) under the command line's. Of a
        mutually exclusive group, an option on the command line also drops the others' config values.

        Raises:
            SystemExit: a usage error (argparse's, or a required option missing).
            ValueError, FileNotFoundError: see :func:`advrobust.cli.config.read_config`.
        """
        namespace = argparse.Namespace(**{dest: _UNSET for dest in self.options}, config=_UNSET)
        args = self._parser.parse_args(list(argv), namespace=namespace)
        given = {dest for dest in self.options if getattr(args, dest) is not _UNSET}
        config, args.config_tables = {}, {}
        if args.config is not _UNSET and args.config is not None:
            config, args.config_tables = read_config(args.config, self.options, self.tables)
        else:
            args.config = None
        self._drop_excluded(config, given, args.config)
        for dest, action in self.options.items():
            if dest not in given:
                setattr(args, dest, config.get(dest, action.default))
        missing = [self.options[d].option_strings[-1] for d in self.required if getattr(args, d) is None]
        if missing:
            self.error(f"the following arguments are required (on the command line or in --config): "
                       f"{', '.join(missing)}")
        return args

    def _drop_excluded(self, config: dict, given: set, path: str | None) -> None:
        """Drop from ``config`` the values of a group whose option the command line gives; refuse a
        config that gives two options of one group."""
        for dests in self.exclusive:
            if any(d in given for d in dests):
                for d in dests:
                    config.pop(d, None)
            elif sum(d in config for d in dests) > 1:
                both = [d.replace("_", "-") for d in dests if d in config]
                raise ValueError(f"config {path}: keys {both} exclude each other; give one")
