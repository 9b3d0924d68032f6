"""Randomized-smoothing certification (Cohen, Rosenfeld and Kolter 2019): Smooth.certify_batch with
a fixed number of noise draws beside a loop in the style of the reference code (one image at a time),
same model, n0, n and batch size (cases: :data:`advrobust.bench.cases.CERTIFY`); and
Smooth.certify_adaptive beside certify_batch at the same number of evaluations per image
(:data:`advrobust.bench.cases.CERTIFY_ADAPTIVE`).

Model: a small ConvNet on 3x32x32 standard-normal images, random weights (the time does not depend
on them), as in ``advrobust bench defenses``.
"""
from __future__ import annotations

import pytest
import torch

from advrobust.bench.defenses import convnet, reference_style_certify
from advrobust.defenses import Smooth

SIGMA, ALPHA, CLASSES = 0.25, 0.001, 3


@pytest.fixture(scope="module")
def model_and_images(certify_case, device):
    model = convnet(device).eval()
    g = torch.Generator().manual_seed(1)
    return model, torch.randn(certify_case.n_images, 3, 32, 32, generator=g).to(device)


@pytest.mark.parametrize("impl", ["certify_batch", "per-image loop"])
def test_certify_fixed_n(measure, model_and_images, certify_case, impl):
    c = certify_case
    model, x = model_and_images
    if impl == "certify_batch":
        smooth = Smooth(model, CLASSES, SIGMA)
        fn = lambda: smooth.certify_batch(x, c.n0, c.n, ALPHA, c.batch)  # noqa: E731
    else:
        fn = lambda: reference_style_certify(model, x, c.n0, c.n, ALPHA, c.batch, SIGMA, CLASSES)  # noqa: E731
    measure(fn, group=f"certify fixed n {c.label}", impl=impl, rounds=3, objects=c.n_images)


@pytest.mark.parametrize("impl", ["certify_adaptive", "certify_batch at the adaptive mean samples"])
def test_certify_adaptive(measure, model_and_adaptive_images, certify_adaptive_case, impl):
    """certify_adaptive beside certify_batch drawing, per image, the mean number of evaluations the
    adaptive procedure ends up spending (n0 = 32, n = the rest): the cost of the sequential looks per
    evaluation, with the same work."""
    c = certify_adaptive_case
    model, x = model_and_adaptive_images
    smooth = Smooth(model, CLASSES, SIGMA)
    radii = [r * SIGMA for r in c.radii_sigma]
    run = lambda: smooth.certify_adaptive(x, radii, alpha=ALPHA, n_max=c.n_max, batch_size=c.batch,  # noqa: E731
                                          generator=torch.Generator(device=x.device).manual_seed(0))
    mean_samples = int(round(float(run().samples.double().mean())))
    if impl == "certify_adaptive":
        fn = run
    else:
        n0 = min(32, mean_samples - 1) if mean_samples > 1 else 1
        fn = lambda: smooth.certify_batch(x, n0, max(1, mean_samples - n0), ALPHA, c.batch)  # noqa: E731
    measure(fn, group=f"certify adaptive {c.label}", impl=impl, rounds=3, objects=c.n_images,
            mean_samples=mean_samples)


@pytest.fixture(scope="module")
def model_and_adaptive_images(certify_adaptive_case, device):
    model = convnet(device).eval()
    g = torch.Generator().manual_seed(1)
    return model, torch.randn(certify_adaptive_case.n_images, 3, 32, 32, generator=g).to(device)
