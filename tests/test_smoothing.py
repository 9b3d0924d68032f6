"""Randomized smoothing (advrobust.defenses.Smooth): the certified radius for planted counts,
abstention on a coin flip, certify_batch against certify image by image."""
import pytest
import torch
from scipy.stats import binom, norm
from torch import nn

from advrobust.defenses import Smooth, lower_confidence_bound


class Planted(nn.Module):
    """Returns class 1 for the first ``n_a`` rows of the estimation draws (and all selection draws),
    class 0 for the rest: exactly planted counts, whatever the noise and the pass sizes."""

    def __init__(self, n0: int, n_a: int) -> None:
        super().__init__()
        self.n0, self.n_a, self.seen = n0, n_a, 0
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        rows = torch.arange(self.seen, self.seen + x.shape[0])
        self.seen += x.shape[0]
        cls = ((rows < self.n0) | (rows - self.n0 < self.n_a)).long()
        return nn.functional.one_hot(cls, 3).float()


class SignOfPixel(nn.Module):
    """Class 1 when pixel (0, 0, 0) is > 0, else class 0: a coin flip at x = 0."""

    def forward(self, x):
        p = x[:, 0, 0, 0]
        return torch.stack([-p, p], 1)


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 4 * 4, 4)

    def forward(self, x):
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("batch_size", [64, 1000])
def test_certify_planted_counts(batch_size):
    n0, n, n_a, sigma, alpha = 100, 1000, 990, 0.25, 0.001
    smooth = Smooth(Planted(n0, n_a), num_classes=3, sigma=sigma)
    pred, radius = smooth.certify(torch.zeros(3, 4, 4), n0, n, alpha, batch_size)
    p_a = lower_confidence_bound(n_a, n, alpha)
    assert pred == 1
    assert radius == pytest.approx(sigma * norm.ppf(p_a), rel=1e-12)
    # the Clopper-Pearson lower bound p solves P(Bin(n, p) >= n_a) = alpha
    assert binom.sf(n_a - 1, n, p_a) == pytest.approx(alpha, rel=1e-6)
    assert 0.5 < p_a < n_a / n


def test_certify_abstains_below_half_and_on_coin_flip():
    smooth = Smooth(Planted(100, 500), num_classes=3, sigma=0.5)
    assert smooth.certify(torch.zeros(3, 4, 4), 100, 1000, 0.001, 256) == (Smooth.ABSTAIN, 0.0)
    coin = Smooth(SignOfPixel(), num_classes=2, sigma=1.0)
    g = torch.Generator().manual_seed(0)
    assert coin.certify(torch.zeros(1, 2, 2), 100, 2000, 0.001, 500, generator=g) == (Smooth.ABSTAIN, 0.0)
    assert coin.predict(torch.zeros(1, 2, 2), 2000, 0.001, 500, generator=g) == Smooth.ABSTAIN
    # far from the boundary the prediction is sure
    assert coin.predict(torch.full((1, 2, 2), 5.0), 200, 0.001, 64, generator=g) == 1


def test_certify_batch_equals_certify_image_by_image():
    torch.manual_seed(1)
    x = torch.randn(5, 3, 4, 4) * 0.5
    smooth = Smooth(Linear(), num_classes=4, sigma=0.5)
    g = torch.Generator().manual_seed(7)
    one = [smooth.certify(x[i], 50, 300, 0.01, 128, generator=g) for i in range(5)]
    g.manual_seed(7)
    pred, radius = smooth.certify_batch(x, 50, 300, 0.01, 128, generator=g)
    assert pred.tolist() == [p for p, _ in one]
    assert radius.tolist() == [r for _, r in one]
    assert (pred >= 0).any() and (radius > 0).any()  # not all abstentions


def test_smooth_argument_errors():
    with pytest.raises(ValueError, match="sigma"):
        Smooth(Linear(), 4, 0.0)
    s = Smooth(Linear(), 4, 0.1)
    with pytest.raises(ValueError, match="alpha"):
        s.certify(torch.zeros(3, 4, 4), 10, 10, 1.5, 8)
    with pytest.raises(TypeError, match="n0"):
        s.certify(torch.zeros(3, 4, 4), 1.5, 10, 0.01, 8)
