"""Attack strengths on the command line: ``--eps`` (image units) or ``--eps-sky`` (sky sigmas per band)."""
from __future__ import annotations

import numpy as np


def add_eps_arguments(group, *, default_sky: float | None = 2.0, measured_on: str = "the images") -> None:
    """``--eps`` (image units) and ``--eps-sky`` (sky sigmas of each band), mutually exclusive, in ``group``."""
    strength = group.add_mutually_exclusive_group()
    strength.add_argument("--eps", type=float, help="L-inf radius in image units, the same in every band")
    strength.add_argument("--eps-sky", type=float, default=default_sky,
                          help="L-inf radius in sky-noise sigmas, K in every band: band b moves by at most K x its "
                               f"own sky sigma, measured on {measured_on} (advrobust.data.sky_sigma; the attacks' "
                               "unit, so pgd_l2's L2 radius is in those units too)"
                               + (f" (default {default_sky})" if default_sky is not None else ""))


def resolve_eps(args, images: np.ndarray):
    """``(eps, unit, sky)`` from ``args.eps`` / ``args.eps_sky``: ``--eps E`` gives ``(E, None, sky)``
    (image units); ``--eps-sky K`` gives ``(K, sky as a tuple, sky)`` (K sky sigmas in every band);
    neither gives ``(None, None, sky)``. ``sky``: per-band sky sigma ``(C,)`` of ``images``
    ``(N, C, H, W)``, or None.

    The sky sigma is measured on ``images`` whenever it can be (the report states eps in both
    units); with ``--eps-sky`` a failure to measure it is an error.
    """
    from advrobust.data import sky_sigma

    eps_sky = args.eps_sky if args.eps is None else None
    try:
        sky = sky_sigma(images)
    except ValueError as err:
        if eps_sky is not None:
            raise ValueError(f"--eps-sky needs the sky sigma of every band, which cannot be measured on these "
                             f"{images.shape[-2]}x{images.shape[-1]} px stamps ({err}); give the radius in image "
                             "units with --eps") from None
        sky = None
    if args.eps is not None:
        return float(args.eps), None, sky
    if eps_sky is None:
        return None, None, sky
    return float(eps_sky), tuple(float(s) for s in sky), sky
