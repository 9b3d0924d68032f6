"""Survey data: a GalSim simulator (no survey data can be downloaded here) and loaders for real files.

* :func:`simulate_photoz` -- ugriz 64x64 cutouts of CWW-template galaxies, E(B-V), spectroscopic z.
* :func:`simulate_morphology` -- gri 100x100 spirals (0), ellipticals (1), mergers (2) at depths Y10 and Y1.
* :func:`save_arrays` / :func:`load_arrays`, :func:`load_images`, :func:`load_catalogue` -- files
  (writes are atomic).
* :func:`write_qp` -- binned redshift p.d.f.s as a ``qp`` histogram ensemble (LSST DESC RAIL's
  format; needs ``pip install qp-prob``).
* :func:`open_images` -- an :class:`ImageReader` serving row ranges of a cube without reading the
  whole file (memory-mapped windows of ``.npy``, HDF5 slices, FITS sections).
* :class:`SurveyDataset`, :func:`load_survey` -- a torch Dataset with flips and 90-degree rotations.
* :func:`asinh_stretch`, :func:`percentile_clip` -- the preprocessing of Ćiprijanović et al. (2022).
* :func:`sky_sigma` -- robust per-band sky-noise estimate (the unit of attack strengths).
"""
from advrobust.data.dataset import SurveyDataset, load_survey, random_dihedral
from advrobust.data.io import load_arrays, load_catalogue, load_images, save_arrays
from advrobust.data.readers import ArrayReader, ImageReader, open_images
from advrobust.data.qp_io import write_qp
from advrobust.data.preprocess import asinh_stretch, percentile_clip
from advrobust.data.sky import sky_sigma
from advrobust.data.simulate import (
    MORPHOLOGY_BANDS,
    MORPHOLOGY_CLASSES,
    PHOTOZ_BANDS,
    simulate_morphology,
    simulate_photoz,
)

__all__ = [
    "simulate_photoz",
    "simulate_morphology",
    "PHOTOZ_BANDS",
    "MORPHOLOGY_BANDS",
    "MORPHOLOGY_CLASSES",
    "SurveyDataset",
    "load_survey",
    "random_dihedral",
    "save_arrays",
    "load_arrays",
    "load_images",
    "load_catalogue",
    "write_qp",
    "open_images",
    "ImageReader",
    "ArrayReader",
    "asinh_stretch",
    "percentile_clip",
    "sky_sigma",
]
