"""Randomized-smoothing certification (Cohen, Rosenfeld and Kolter 2019): Smooth.certify_batch with
a fixed number of noise draws beside a loop in the style of the reference code (one image at a time),
same model, n0, n and batch size (cases: :data:`advrobust.bench.cases.CERTIFY`).

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


# Adaptive certification: once advrobust.defenses has it, add its cases to advrobust.bench.cases
# (CERTIFY_ADAPTIVE) and its benchmark here, test_certify_adaptive, in a group of its own beside
# certify_batch at the n it ends up drawing.
