"""``--device`` of the commands that read a survey; the check itself is
:func:`advrobust.checks.check_device` (the package's one device check)."""
from __future__ import annotations


def add_device_argument(group, *, note: str = "") -> None:
    """``--device`` (default ``cpu``) in ``group``, a parser or an argument group; ``note`` ends its help."""
    group.add_argument("--device", default="cpu", help=f"cpu, cuda or cuda:N (default cpu{note})")


def resolve_device(name: str):
    """``torch.device`` of ``--device``: ``cpu``, ``cuda`` or ``cuda:N`` (ValueError otherwise, or
    where CUDA is asked for and not visible)."""
    from advrobust.checks import check_device

    return check_device("--device", name)
