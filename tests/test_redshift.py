"""Tests of advrobust.redshift, the one home of the binning and the photo-z formulas, and of its users."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from advrobust import models, redshift
from advrobust.attacks import PhotozBinCE, PhotozDeltaZ, PhotozObjective
from advrobust.metrics import delta_z as metrics_delta_z


def test_edges_and_centres_of_the_papers_binning():
    edges, centres = redshift.bin_edges(180, 1.0), redshift.bin_centres(180, 1.0)
    assert edges.shape == (181,) and centres.shape == (180,) and edges.dtype == torch.float64
    assert edges[0] == 0.0 and edges[-1] == 1.0 and edges[1] == 1 / 180
    torch.testing.assert_close(centres, 0.5 * (edges[1:] + edges[:-1]))
    torch.testing.assert_close(torch.diff(edges), torch.full((180,), 1 / 180, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_redshift_on_an_edge_goes_to_the_upper_bin(dtype):
    """Half-open bins [e_k, e_k+1), the last bin closed at z_max, outside values clipped."""
    edges = redshift.bin_edges(4, 1.0)  # 0, 0.25, 0.5, 0.75, 1: exact in binary
    z = torch.tensor([-0.1, 0.0, 0.2499, 0.25, 0.5, 0.6, 0.75, 0.99, 1.0, 2.0], dtype=dtype)
    assert redshift.redshift_to_bin(z, edges).tolist() == [0, 0, 0, 1, 2, 2, 3, 3, 3, 3]
    # every edge of the 180 bins of Campagne (2021), in float32 and float64: edge k opens bin k
    e180 = redshift.bin_edges(180, 1.0)
    k = redshift.redshift_to_bin(e180.to(dtype), e180)
    assert k.tolist() == list(range(180)) + [179]


def test_model_and_photoz_loss_now_agree_on_edges():
    """Before: PhotozModel.redshift_to_bin floored z / width (z = 0.1 -> bin 1 of 4 bins on [0, 0.4]) while
    the loss bucketized at centre midpoints with the edge in the lower bin (z = 0.1 -> bin 0)."""
    model = models.create("photoz_small", n_bins=4, z_max=0.4)
    z = torch.tensor([0.0, 0.1, 0.2, 0.30000001192092896, 0.4])
    bins = model.redshift_to_bin(z)
    assert bins.tolist() == [0, 1, 2, 3, 3]
    # the loss's target bin is the model's: a logit spike there gives the smallest cross-entropy
    loss = PhotozBinCE().bind(model)
    spikes = 20.0 * F.one_hot(bins, 4).float()
    torch.testing.assert_close(loss(spikes, z), F.cross_entropy(spikes, bins, reduction="none"))
    shifted = 20.0 * F.one_hot((bins + 1) % 4, 4).float()
    assert torch.all(loss(shifted, z) > loss(spikes, z))


def test_z_phot_is_the_pdf_weighted_mean_of_the_bin_centres():
    logits = torch.randn(5, 180, dtype=torch.float64)
    centres = redshift.bin_centres(180, 1.0)
    p = np.exp(logits.numpy())
    p /= p.sum(1, keepdims=True)
    textbook = (p * centres.numpy()).sum(1)  # sum_k p_k c_k with p = softmax(logits)
    np.testing.assert_allclose(redshift.z_phot(logits, centres).numpy(), textbook, rtol=1e-12)
    model = models.create("photoz_small").eval()
    image, ebv = torch.randn(2, 5, 64, 64), torch.zeros(2)
    with torch.no_grad():
        torch.testing.assert_close(model.z_phot(image, ebv), model.pdf(image, ebv) @ model.bin_centres)
    with pytest.raises(ValueError, match=r"\(N, 180\)"):
        redshift.z_phot(logits[:, :10], centres)


def test_delta_z_on_tensors_and_arrays():
    zp, zs = [0.11, 0.5, 1.2], [0.1, 0.5, 1.0]
    textbook = [(a - b) / (1 + b) for a, b in zip(zp, zs)]
    np.testing.assert_allclose(redshift.delta_z(np.array(zp), np.array(zs)), textbook)
    t = redshift.delta_z(torch.tensor(zp, dtype=torch.float32), torch.tensor(zs, dtype=torch.float32))
    assert t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), textbook, rtol=1e-6)
    np.testing.assert_allclose(metrics_delta_z(zp, zs), textbook)
    assert metrics_delta_z is redshift.delta_z  # one dz, one home
    with pytest.raises(ValueError, match="same length"):
        redshift.delta_z([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="greater than -1"):
        redshift.delta_z([0.1], [-1.0])


def test_photoz_hooks_use_the_same_dz():
    torch.manual_seed(0)
    logits, z = torch.randn(6, 20), torch.rand(6)
    centres = redshift.bin_centres(20, 1.0).float()
    zp = torch.softmax(logits, 1) @ centres
    dz = (zp - z).abs() / (1 + z)
    torch.testing.assert_close(PhotozDeltaZ(centres)(logits, z), dz)
    fitness, success = PhotozObjective(centres, threshold=0.05)(logits, z)
    torch.testing.assert_close(fitness, -dz)
    assert torch.equal(success, dz > 0.05)
