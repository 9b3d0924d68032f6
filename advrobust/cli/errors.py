"""How a command's errors reach the user: a usage mistake exits 2 with the command's usage
(argparse's convention), any other error exits 1 with one line (``--debug`` shows the traceback)."""
from __future__ import annotations


class UsageError(Exception):
    """A mistake on the command line found after parsing (a missing or contradictory option): the
    dispatcher prints the command's usage and this message, and exits 2."""


def flat(err: BaseException) -> str:
    """The message of ``err`` on one line (its type's name where it has none)."""
    return " ".join(str(err).split()) or type(err).__name__


def one_line(prog: str, err: BaseException) -> str:
    """``"<prog>: error: <message on one line> (<type>; --debug for the traceback)"``."""
    return f"{prog}: error: {flat(err)} ({type(err).__name__}; --debug for the traceback)"
