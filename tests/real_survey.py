"""A small survey cut from a real frame shipped with astropy (``comp.fits``: NGC 1316, 300 x 440 int16
image), for the end-to-end command-line tests: stamps (N, 3, H, W) of integer counts, the three
bands the same sky position shifted by 0, 1 and 2 pixels, and a shuffled catalogue with an id column."""
import os

import numpy as np


def astropy_frame(name: str = "comp.fits", hdu: int = 1) -> np.ndarray:
    """The image of ``hdu`` of an astropy test file, as int64."""
    import astropy
    from astropy.io import fits

    path = os.path.join(os.path.dirname(astropy.__file__), "io", "fits", "tests", "data", name)
    with fits.open(path) as hdus:
        return np.asarray(hdus[hdu].data, dtype=np.int64)


def real_stamps(size: int = 24, bands: int = 3) -> np.ndarray:
    """``(N, bands, size, size)`` int16 stamps of ``comp.fits`` on a grid of step ``size``; band b
    is the stamp shifted by b pixels down and right."""
    frame = astropy_frame()
    rows = range(0, frame.shape[0] - size - bands, size)
    cols = range(0, frame.shape[1] - size - bands, size)
    stamps = [[frame[r + b:r + b + size, c + b:c + b + size] for b in range(bands)] for r in rows for c in cols]
    return np.asarray(stamps, dtype=np.int16)


def write_survey(folder, *, size: int = 24, unit: str | None = "counts", n: int | None = None) -> dict:
    """Write ``stamps.fits`` (the cube, ``BUNIT = unit``, and a table ``IDS`` of the images'
    ``objid``) and ``catalog.csv`` (columns ``objid``,
    ``label``: the brightness tercile of the stamp's centre, rows shuffled) into ``folder``;
    returns ``{"data", "catalog", "images", "labels", "ids"}``."""
    import pandas as pd
    from astropy.io import fits

    images = real_stamps(size)[:n]
    centre = images[:, :, size // 4:-size // 4, size // 4:-size // 4].astype(np.float64).mean(axis=(1, 2, 3))
    labels = np.searchsorted(np.quantile(centre, [1 / 3, 2 / 3]), centre)
    ids = 1000 + np.arange(len(images))
    hdu = fits.ImageHDU(images, name="STAMPS")
    if unit is not None:
        hdu.header["BUNIT"] = unit
    data = os.path.join(folder, "stamps.fits")
    table = fits.BinTableHDU.from_columns([fits.Column(name="objid", format="K", array=ids)], name="IDS")
    fits.HDUList([fits.PrimaryHDU(), hdu, table]).writeto(data, overwrite=True)
    order = np.random.default_rng(0).permutation(len(images))
    catalog = os.path.join(folder, "catalog.csv")
    pd.DataFrame({"objid": ids[order], "label": labels[order]}).to_csv(catalog, index=False)
    return {"data": data, "catalog": catalog, "images": images, "labels": labels, "ids": ids}
