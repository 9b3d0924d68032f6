"""SmoothRegression (median smoothing, Chiang et al. 2020) on a linear regression, where the noisy output
is Gaussian and the smoothed median's worst case within radius r is g(x) +- |w| r in closed form; the
order-statistic ranks against a brute-force binomial search; photo-z models smoothed on z_phot;
certified non-outliers; bad input raises."""
import numpy as np
import pytest
import torch
from scipy.stats import binom, norm
from torch import nn

import advrobust.defenses.median_smoothing as median_smoothing
from advrobust.defenses import RegressionCertificate, SmoothRegression, certified_non_outlier, order_statistic_bounds
from advrobust.models import create


class LinearRegression(nn.Module):
    def __init__(self, column: bool = False) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.6, -0.8, 1.2, 0.0]), requires_grad=False)  # |w| = 1.562
        self.column = column

    def forward(self, x):
        y = x.flatten(1) @ self.w + 0.3
        return y[:, None] if self.column else y


def brute_force_ranks(n, p_lo, p_hi, a):
    """Largest k with P(Bin(n, p_lo) >= k) >= 1 - a and smallest k with P(Bin(n, p_hi) <= k - 1) >= 1 - a,
    by a plain loop over k (0 / n + 1 when none)."""
    k_lo = max([k for k in range(1, n + 1) if binom.sf(k - 1, n, p_lo) >= 1 - a], default=0)
    k_hi = min([k for k in range(1, n + 1) if binom.cdf(k - 1, n, p_hi) >= 1 - a], default=n + 1)
    return k_lo, k_hi


@pytest.mark.parametrize("n,radius,sigma,alpha", [(50, 0.1, 0.5, 0.05), (400, 0.3, 0.25, 0.001), (10, 1.0, 0.5, 0.01),
                                                  (1000, 0.0, 1.0, 0.1)])
def test_order_statistic_ranks(n, radius, sigma, alpha):
    p_lo, p_hi = norm.cdf(-radius / sigma), norm.cdf(radius / sigma)
    k_lo, k_hi = order_statistic_bounds(n, radius, sigma, alpha)
    assert (k_lo, k_hi) == brute_force_ranks(n, p_lo, p_hi, alpha / 2)
    if 0 < k_lo:
        assert k_hi == n + 1 - k_lo  # p_hi = 1 - p_lo: the ranks mirror each other


def test_interval_contains_the_true_worst_case():
    """g(x) = w . x + 0.3 exactly (the noisy output is N(w . x + 0.3, sigma^2 |w|^2)), and within radius r
    the smoothed median ranges over exactly [g(x) - |w| r, g(x) + |w| r]. At alpha = 0.1 over 400 inputs
    the intervals missing either end must be plausible under Bin(400, 0.1) (exact bound; 38 here, and
    76 with alpha per side instead of alpha / 2, which fails). The intervals are also tight: within a
    few standard errors of the true ends."""
    sigma, r, alpha, n, b = 0.5, 0.2, 0.1, 801, 400
    model = LinearRegression()
    x = torch.randn(b, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    out = SmoothRegression(model, sigma).certify(x, r, alpha=alpha, n=n, batch_size=4096,
                                                 generator=torch.Generator().manual_seed(1))
    assert isinstance(out, RegressionCertificate)
    g = (x.flatten(1) @ model.w + 0.3).double()
    w = float(model.w.norm())
    missed = (out.lo > g - w * r) | (out.hi < g + w * r)
    assert int(missed.sum()) <= binom.ppf(1 - 1e-6, b, alpha)
    step = sigma * w / np.sqrt(n)  # ~ the standard error of a central quantile / its density ratio
    assert float((g - w * r - out.lo).abs().max()) < 12 * step
    assert float((out.hi - g - w * r).abs().max()) < 12 * step
    assert float((out.median - g).abs().max()) < 6 * step
    assert out.samples.tolist() == [n] * b and out.radius == r


def test_column_output_equals_flat_output_and_groups(monkeypatch):
    sigma, x = 0.5, torch.randn(6, 1, 2, 2, generator=torch.Generator().manual_seed(2))
    kw = dict(alpha=0.01, n=300, batch_size=128)
    a = SmoothRegression(LinearRegression(), sigma).certify(x, 0.1, **kw, generator=torch.Generator().manual_seed(3))
    b = SmoothRegression(LinearRegression(column=True), sigma).certify(x, 0.1, **kw,
                                                                      generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.lo, b.lo) and torch.equal(a.hi, b.hi) and torch.equal(a.median, b.median)
    monkeypatch.setattr(median_smoothing, "MAX_OUTPUTS", 700)  # two inputs per group
    c = SmoothRegression(LinearRegression(), sigma).certify(x, 0.1, **kw, generator=torch.Generator().manual_seed(3))
    assert c.lo.shape == (6,) and bool((c.lo <= c.median).all() and (c.median <= c.hi).all())


def test_too_few_samples_give_infinite_bounds():
    out = SmoothRegression(LinearRegression(), 0.5).certify(torch.zeros(2, 1, 2, 2), 2.0, alpha=0.001, n=20,
                                                            batch_size=64)
    assert torch.isinf(out.lo).all() and (out.lo < 0).all() and torch.isinf(out.hi).all() and (out.hi > 0).all()
    assert not certified_non_outlier(out.lo, out.hi, torch.tensor([0.5, 0.5])).any()


def test_photoz_model_is_smoothed_on_z_phot():
    """With a tiny sigma the smoothed median is the model's own z_phot (with its ebv), in [0, z_max]."""
    torch.manual_seed(0)
    model = create("photoz_small").eval()
    g = torch.Generator().manual_seed(4)
    x, ebv = torch.rand(3, 5, 64, 64, generator=g) * 0.05, torch.rand(3, generator=g) * 0.1
    out = SmoothRegression(model, 1e-9).certify(x, 0.0, ebv, alpha=0.01, n=64, batch_size=100,
                                                generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        z = model.z_phot(x, ebv).double()
    with pytest.raises(ValueError, match="pass ebv"):
        SmoothRegression(model, 1e-3).certify(x, 0.0, alpha=0.01, n=8, batch_size=8)
    assert torch.allclose(out.median, z, atol=1e-5)
    assert bool((out.lo <= out.median).all() and (out.median <= out.hi).all())


def test_certified_non_outlier():
    z_spec = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.5])
    lo = torch.tensor([0.95, 0.89, 0.95, -0.05, float("-inf")], dtype=torch.float64)
    hi = torch.tensor([1.05, 1.05, 1.11, 0.05, 0.5], dtype=torch.float64)
    # |dz| <= 0.05: with 1 + z_spec = 2 the interval may reach z_spec +- 0.1
    assert certified_non_outlier(lo, hi, z_spec, 0.05).tolist() == [True, False, False, True, False]
    with pytest.raises(ValueError, match="redshifts <= -1"):
        certified_non_outlier(lo, hi, torch.tensor([1.0, 1.0, 1.0, -99.0, 0.5]))
    with pytest.raises(ValueError, match="same shape"):
        certified_non_outlier(lo, hi, z_spec[:3])


class Logits(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :3]


class NaNRegression(nn.Module):
    def forward(self, x):
        y = x.flatten(1).sum(1)
        y[0] = float("inf")
        return y


def test_bad_input_raises():
    x = torch.zeros(2, 1, 2, 2)
    kw = dict(alpha=0.01, n=50, batch_size=64)
    with pytest.raises(ValueError, match="one float value per input"):
        SmoothRegression(Logits(), 0.5).certify(x, 0.1, **kw)
    with pytest.raises(ValueError, match="NaN/Inf"):
        SmoothRegression(NaNRegression(), 0.5).certify(x, 0.1, **kw)
    s = SmoothRegression(LinearRegression(), 0.5)
    with pytest.raises(ValueError, match="radius"):
        s.certify(x, -0.1, **kw)
    with pytest.raises(ValueError, match="alpha"):
        s.certify(x, 0.1, alpha=0.0, n=50, batch_size=64)
    with pytest.raises(TypeError, match="n must be an integer"):
        s.certify(x, 0.1, alpha=0.01, n=50.5, batch_size=64)
    with pytest.raises(ValueError, match="extra input 0"):
        s.certify(x, 0.1, torch.zeros(3), **kw)
    with pytest.raises(TypeError, match="float"):
        s.certify(x.long(), 0.1, **kw)
    with pytest.raises(ValueError, match="sigma"):
        SmoothRegression(LinearRegression(), 0.0)
