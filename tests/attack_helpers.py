"""Shared pieces of the attack tests: the RNG fixture, small models (a CNN, a photo-z model, a trained MLP,
a NaN model), the plain-PyTorch PGD oracles and a random batch."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advrobust import redshift


@pytest.fixture(autouse=True)
def _restore_rng():
    state = torch.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.set_rng_state(state)


def small_cnn(C=3, H=8, W=8, n_classes=3, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(C, 6, 3, padding=1), nn.BatchNorm2d(6), nn.Tanh(), nn.Flatten(), nn.Dropout(0.2),
        nn.Linear(6 * H * W, n_classes),
    ).to(dtype)


class TinyPhotoz(nn.Module):
    """(image, ebv) -> logits over 20 redshift bins on [0, 1], with bin_centres and bin_edges buffers."""

    def __init__(self, C=5, H=8, W=8, n_bins=20):
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv2d(C, 4, 3, padding=1)
        self.fc = nn.Linear(4 * H * W + 1, n_bins)
        self.register_buffer("bin_centres", redshift.bin_centres(n_bins, 1.0).float())
        self.register_buffer("bin_edges", redshift.bin_edges(n_bins, 1.0))
        self.seen_ebv = None

    def forward(self, image, ebv):
        self.seen_ebv = ebv
        h = torch.tanh(self.conv(image)).flatten(1)
        return self.fc(torch.cat([h, ebv.view(-1, 1).to(h.dtype)], 1))


@pytest.fixture(scope="module")
def trained_mlp():
    """A two-layer classifier trained for ~1 s on three Gaussian blobs in 3x6x6 images."""
    g = torch.Generator().manual_seed(3)
    centres = torch.randn(3, 3 * 6 * 6, generator=g)
    y = torch.randint(0, 3, (600,), generator=g)
    x = (centres[y] + 0.8 * torch.randn(600, 108, generator=g)).view(600, 3, 6, 6)
    torch.manual_seed(4)
    model = nn.Sequential(nn.Flatten(), nn.Linear(108, 32), nn.ReLU(), nn.Linear(32, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), x[:64], y[:64]


def plain_pgd(model, x, y, eps, alpha, steps):
    xa = x.clone()
    for _ in range(steps):
        xa.requires_grad_(True)
        loss = F.cross_entropy(model(xa), y)
        (g,) = torch.autograd.grad(loss, xa)
        xa = torch.min(torch.max(xa.detach() + alpha * g.sign(), x - eps), x + eps)
    return xa


def plain_pgd_l2(model, x, y, eps, alpha, steps):
    xa = x.clone()
    for _ in range(steps):
        xa.requires_grad_(True)
        loss = F.cross_entropy(model(xa), y)
        (g,) = torch.autograd.grad(loss, xa)
        gn = g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        d = xa.detach() - x + alpha * g / gn
        dn = d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        xa = x + eps * d / torch.clamp(dn, min=eps)
    return xa


def data(B=6, C=3, H=8, W=8, dtype=torch.float32):
    return torch.randn(B, C, H, W, dtype=dtype), torch.randint(0, 3, (B,))


class NaNModel(nn.Module):
    """A classifier whose output is NaN for the samples whose first pixel is > 0 (all of them by default)."""

    def __init__(self, everywhere=True):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 3)
        self.everywhere = everywhere

    def forward(self, x):
        out = self.fc(x.flatten(1))
        nan = torch.ones_like(out[:, :1], dtype=torch.bool) if self.everywhere else (x[:, :1, 0, 0] > 0)
        return torch.where(nan, torch.full_like(out, float("nan")), out)
