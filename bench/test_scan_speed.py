"""The survey scan's throughput beside its model-bound limit (cases: :data:`advrobust.bench.cases.SCANS`).

``scan``: :func:`advrobust.scan.survey.scan_survey` of a .npy survey of sky noise plus a blob under
one attack, into a fresh catalogue each round (file reading, attack, rows, Parquet parts and
catalogue included). Beside it, the same model on the same objects in the same batches: ``forward``
(plain, no gradient) and ``forward+backward`` (the input gradient). The scan's model work per object
is 2 forwards (clean and attacked predictions) plus the attack's forward+backward passes (noise 0,
FGSM 1, PGD ``pgd_steps``; :attr:`ScanCase.model_passes`, recorded in ``extra_info``), so its
model-bound time is ``2 T(forward) + passes T(forward+backward)``; one case per attack set.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from advrobust import models
from advrobust.attacks.by_name import AttackSettings
from advrobust.data import load_survey
from advrobust.scan.survey import scan_survey

SKY_SIGMA = 1e-3  # nanomaggies per pixel
EPS_SKY = 2.0  # the attack's L-inf radius in sky sigmas


@pytest.fixture(scope="module")
def survey(scan_case, device, tmp_path_factory):
    """The model (morphology_small, random weights, eval), the survey file's path and its images."""
    c = scan_case
    folder = tmp_path_factory.mktemp("scan_bench")
    torch.manual_seed(0)
    model = models.create("morphology_small", image_size=c.size).to(device).eval()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:c.size, :c.size]
    blob = np.exp(-((yy - c.size / 2) ** 2 + (xx - c.size / 2) ** 2) / (c.size / 2))
    images = (rng.normal(0, SKY_SIGMA, (c.n_objects, 3, c.size, c.size))
              + rng.uniform(0.01, 0.05, (c.n_objects, 3, 1, 1)) * blob).astype(np.float32)
    np.save(folder / "images.npy", images)
    return model, folder, torch.from_numpy(images).to(device)


@pytest.mark.parametrize("impl", ["scan", "forward", "forward+backward"])
def test_scan_throughput(measure, scan_case, survey, impl):
    c = scan_case
    model, folder, x = survey
    batches = [x[i:i + c.batch] for i in range(0, c.n_objects, c.batch)]
    if impl == "scan":
        dataset = load_survey(folder / "images.npy")
        settings = AttackSettings(eps=EPS_SKY, pgd_steps=c.pgd_steps, unit=SKY_SIGMA)
        runs = itertools.count()

        def fn():  # a fresh catalogue each call: a scan into an existing one resumes instead
            return scan_survey(model, dataset, str(folder / f"cat{next(runs)}.parquet"), attacks=[c.attack],
                               settings=settings, chunk_size=c.n_objects, batch_size=c.batch, progress=False)
    elif impl == "forward":
        def fn():
            with torch.no_grad():
                return [model(b) for b in batches]
    else:
        def fn():
            grads = []
            for b in batches:
                b = b.detach().requires_grad_(True)
                logits = model(b)
                grads.append(torch.autograd.grad(F.cross_entropy(logits, logits.argmax(1)), b)[0])
            return grads
    measure(fn, group=f"scan {c.label}", impl=impl, rounds=3, objects=c.n_objects,
            scan_model_passes=c.model_passes)
