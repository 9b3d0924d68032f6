"""The ``--write-qp`` flag of ``attack`` and ``scan``: photo-z p.d.f.s as qp files (:func:`advrobust.data.write_qp`)."""
from __future__ import annotations

from advrobust.cli.errors import UsageError

HELP = "photo-z models: write the clean and each perturbed p.d.f. as qp files (RAIL's format; needs qp-prob)"


def require_qp(photoz: bool) -> None:
    """Refuse ``--write-qp`` for a classifier, or without the qp package (saying how to install it).

    Raises:
        UsageError: either case.
    """
    if not photoz:
        raise UsageError("--write-qp applies to photo-z models (their redshift p.d.f.s), not to a classifier")
    from advrobust.data.qp_io import import_qp

    try:
        import_qp()
    except ImportError as err:
        raise UsageError(f"--write-qp: {err}") from None
