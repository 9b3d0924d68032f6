"""advrobust's attacks beside torchattacks, same model, images and settings (cases:
:data:`advrobust.bench.cases.GRAD_ATTACKS`, sizes :data:`~advrobust.bench.cases.ATTACK_SIZES`).

Model: the ConvNet of Ciprijanovic et al. (2022), 3x100x100 -> 3 classes, briefly trained on the
synthetic blob images of :mod:`advrobust.bench.attacks` (in [0, 1]: torchattacks clamps to it).

* FGSM, PGD-Linf-10, PGD-L2-10: advrobust, torchattacks, and the model-bound limit (the same
  forwards and input gradients in a plain loop) in one group per attack.
* OnePixel (k=1): advrobust with full forward passes, with incremental scoring, and torchattacks.

The torchattacks members are skipped, with the reason, when it is not installed
(``pip install --no-deps torchattacks``: its dependencies would pull torchvision and another torch).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import advrobust.attacks as A
from advrobust.bench import cases
from advrobust.bench.attacks import fb_loop, trained_convnet

EPS = 0.03  # [0, 1] image units


def torchattacks_or_skip():
    return pytest.importorskip("torchattacks", reason="torchattacks is not installed: "
                                                      "pip install --no-deps torchattacks")


@pytest.fixture(scope="module")
def sizes(tier) -> dict:
    return cases.ATTACK_SIZES[tier]


@pytest.fixture(scope="module")
def convnet_and_images(sizes, device):
    """The trained ConvNet (eval mode) and its test images (n_test, 3, 100, 100) with their labels."""
    model, xt, yt, _ = trained_convnet(sizes["train_steps"], sizes["n_test"], device)
    return model, xt, yt


@pytest.mark.parametrize("lib", ["advrobust", "torchattacks", "model fwd+bwd loop"])
@pytest.mark.parametrize("case", cases.GRAD_ATTACKS, ids=lambda c: c.name)
def test_gradient_attack(measure, convnet_and_images, sizes, case, lib):
    model, xt, yt = convnet_and_images
    x, y = xt[:sizes["n_grad"]].contiguous(), yt[:sizes["n_grad"]].contiguous()
    if lib == "advrobust":
        attack = case.ours(A, model, EPS)
        fn = lambda: attack(x, y)  # noqa: E731
    elif lib == "torchattacks":
        attack = case.theirs(torchattacks_or_skip(), model, EPS)
        fn = lambda: attack(x, y)  # noqa: E731
    else:  # advrobust feeds the model channels_last on the CPU (Attack's default there)
        fn = lambda: fb_loop(model, x, y, case.steps, channels_last=x.device.type == "cpu")  # noqa: E731
    measure(fn, group=f"{case.name} {x.shape[0]} images 3x100x100", impl=lib, rounds=3,
            objects=x.shape[0], model_passes=f"{case.steps} forward+backward")


@pytest.mark.parametrize("lib", ["advrobust full", "advrobust incremental", "torchattacks"])
def test_onepixel(measure, convnet_and_images, sizes, lib):
    model, xt, yt = convnet_and_images
    n, P, iters = sizes["n_onepixel"], sizes["population"], sizes["iters"]
    x, y = xt[:n].contiguous(), yt[:n].contiguous()
    if lib == "torchattacks":
        attack = torchattacks_or_skip().OnePixel(model, pixels=1, steps=iters, popsize=P)
    else:
        attack = A.OnePixel(model, pixels=1, population=P, max_iter=iters, lo=0.0, hi=1.0, seed=0,
                            incremental=lib.endswith("incremental"))

    def run():
        torch.manual_seed(0)
        np.random.seed(0)  # torchattacks' differential evolution draws from numpy
        return attack(x, y)

    measure(run, group=f"OnePixel k=1 P={P} {iters} generations {n} images 3x100x100", impl=lib,
            rounds=3, objects=n)
