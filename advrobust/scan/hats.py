"""The scan's catalogue as a HATS catalog (HEALPix-partitioned Parquet) that LSDB joins back to
the survey.

Needs the optional ``hats`` extra (``pip install 'advrobust[hats]'``, i.e. ``lsdb`` and ``hats``).
:func:`write_hats` reads the assembled Parquet catalogue, which must hold the objects' sky
positions (the scan copies them from the survey's catalogue with ``--ra-column`` /
``--dec-column``), and partitions it with ``lsdb.from_dataframe``: the whole catalogue is held in
memory once (about 100 bytes per object for the default scan columns). For surveys beyond memory,
the HATS import pipeline (``hats-import``) reads the same Parquet file in parallel.
"""
from __future__ import annotations

import os

__all__ = ["write_hats", "check_positions"]


def _lsdb():
    try:
        import lsdb
    except ImportError:
        raise ImportError("writing a HATS catalog needs lsdb and hats: pip install 'advrobust[hats]' "
                          "(or pip install lsdb)") from None
    return lsdb


def check_positions(ra, dec, where: str) -> None:
    """Refuse sky positions that are not finite, a declination outside [-90, 90] or a right
    ascension outside [0, 360] (degrees), naming the first rows.

    Raises:
        ValueError: any such position.
    """
    import numpy as np

    ra, dec = np.asarray(ra, np.float64), np.asarray(dec, np.float64)
    bad = ~(np.isfinite(ra) & np.isfinite(dec) & (dec >= -90) & (dec <= 90) & (ra >= 0) & (ra <= 360))
    if bad.any():
        raise ValueError(f"{where}: {int(bad.sum())} objects have no valid sky position (ra in [0, 360], dec in "
                         f"[-90, 90] degrees; first rows {np.flatnonzero(bad)[:5].tolist()})")


def write_hats(catalogue: str | os.PathLike, out: str | os.PathLike, *, ra: str = "ra", dec: str = "dec",
               name: str | None = None) -> str:
    """Write the Parquet ``catalogue`` (one row per object) as a HATS catalog in the folder ``out``.

    Args:
        catalogue: the scan's catalogue (``.parquet``).
        out: the HATS catalog's folder (replaced if it exists).
        ra, dec: the columns of right ascension and declination, in degrees (ICRS).
        name: the catalog's name (default: ``out``'s folder name).

    Returns:
        ``out``.

    Raises:
        ImportError: lsdb is not installed (the message says how to install it).
        ValueError: no ``ra`` / ``dec`` column, or positions outside [0, 360] x [-90, 90] or non-finite.
    """
    import numpy as np
    import pandas as pd

    lsdb = _lsdb()
    table = pd.read_parquet(catalogue)
    missing = [c for c in (ra, dec) if c not in table.columns]
    if missing:
        raise ValueError(f"{catalogue}: no sky position column(s) {missing} for a HATS catalog; the scan copies "
                         "them from the survey catalogue with --ra-column / --dec-column")
    check_positions(table[ra].to_numpy(np.float64), table[dec].to_numpy(np.float64), str(catalogue))
    out = os.fspath(out)
    catalog = lsdb.from_dataframe(table, ra_column=ra, dec_column=dec)
    catalog.write_catalog(out, catalog_name=name or os.path.basename(os.path.normpath(out)), overwrite=True,
                          progress_bar=False)
    return out
