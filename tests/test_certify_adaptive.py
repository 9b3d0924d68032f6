"""Smooth.certify_adaptive on a linear classifier whose smoothed p_A is known in closed form:
false certificates stay within alpha, decisions agree with Cohen's fixed-n certify_batch, a confident
object stops at the look the Clopper-Pearson bound predicts, every draw is counted, bad input raises."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import binom, norm
from torch import nn

from advrobust.defenses import AdaptiveCertificate, Smooth


class LinearTwoClass(nn.Module):
    """Logits ``(0, w . x)``: class 1 when ``w . x > 0``. Under N(0, sigma^2 I) noise the smoothed
    p_1 is ``Phi(w . x / (sigma |w|))``."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w.flatten().clone(), requires_grad=False)
        self.rows = 0  # noisy copies seen

    def forward(self, x):
        self.rows += x.shape[0]
        s = x.flatten(1) @ self.w
        return torch.stack([torch.zeros_like(s), s], 1)


W = torch.tensor([3.0, -4.0, 0.0, 0.0])  # |w| = 5


def images_with_p(p: np.ndarray, sigma: float) -> torch.Tensor:
    """Images (B, 1, 2, 2) whose smoothed p_1 under LinearTwoClass(W) is ``p``."""
    z = torch.from_numpy(norm.ppf(p)).float()
    return (z[:, None] * sigma * W / W.norm()).view(-1, 1, 2, 2)


def test_false_certificates_within_alpha():
    """True p_1 just below Phi(r / sigma): every certificate at r is false. Over 400 objects at alpha = 0.1
    the number of objects with a false certificate must be plausible under Bin(400, 0.1) (an exact
    bound); a test peeking at every look with the full alpha, no Bonferroni, exceeds it."""
    sigma, r, alpha, n_obj = 0.5, 0.25, 0.1, 400
    t = norm.cdf(r / sigma)
    p = np.full(n_obj, t - 1e-3)
    smooth = Smooth(LinearTwoClass(W), num_classes=2, sigma=sigma)
    out = smooth.certify_adaptive(images_with_p(p, sigma), [r], alpha=alpha, n_max=3000, batch_size=8192,
                                  generator=torch.Generator().manual_seed(0))
    false = int(out.certified[:, 0].sum())
    assert false <= binom.ppf(1 - 1e-6, n_obj, alpha)
    # no false certificate at a radius the object cannot reach, whatever the class: the radius is a
    # lower bound of sigma * Phi^-1(p_1)
    wrong = out.radius > torch.from_numpy(sigma * norm.ppf(p))
    assert false <= int(wrong.sum()) <= binom.ppf(1 - 1e-6, n_obj, alpha)
    assert (out.prediction[out.prediction >= 0] == 1).all()


def test_agrees_with_cohen_where_both_decide():
    """Objects whose top-class p_A = max(p_1, 1 - p_1) is at least 0.03 away from every threshold
    Phi(r / sigma) and at least 0.72 (below ~0.7 Cohen's 100 selection draws pick the wrong class
    often enough to abstain; the adaptive test selects from all its draws): at n = 10,000 both
    procedures decide them with certainty up to ~1e-5, so their certified-at-r answers must be
    equal, and equal to the truth."""
    sigma, alpha, radii = 0.5, 0.001, [0.0, 0.25, 0.5, 0.75]
    t = norm.cdf(np.asarray(radii) / sigma)
    p = np.random.default_rng(0).uniform(0.001, 0.999, 400)
    p_a = np.maximum(p, 1 - p)
    keep = (np.abs(p_a[:, None] - t[None, :]).min(1) > 0.03) & (p_a >= 0.72)
    p, p_a = p[keep][:120], p_a[keep][:120]
    x = images_with_p(p, sigma)
    smooth = Smooth(LinearTwoClass(W), num_classes=2, sigma=sigma)
    adaptive = smooth.certify_adaptive(x, radii, alpha=alpha, n_max=10_000, batch_size=8192,
                                       generator=torch.Generator().manual_seed(1))
    pred, radius = smooth.certify_batch(x, 100, 10_000, alpha, 8192, generator=torch.Generator().manual_seed(2))
    cohen = (pred[:, None] >= 0) & (radius[:, None] >= torch.tensor(radii, dtype=torch.float64)[None, :])
    truth = torch.from_numpy(p_a[:, None] >= t[None, :])
    assert torch.equal(adaptive.certified, cohen)
    assert torch.equal(adaptive.certified, truth)
    assert torch.equal(adaptive.prediction, pred) and torch.equal(pred, torch.from_numpy((p > 0.5).astype(np.int64)))
    assert truth.any() and (~truth).any()
    # and it needed fewer draws than Cohen's n0 + n for most of them
    assert float(adaptive.samples.double().median()) < 10_100 / 4


def _looks(n_max: int) -> list:
    looks = [32]
    while looks[-1] < n_max:
        looks.append(min(n_max, math.ceil(looks[-1] * 1.5)))
    return looks


def test_confident_object_stops_where_the_bound_says():
    """Every draw votes for class 1 (p_1 ~ 1 - 1e-12): with n votes of n the Clopper-Pearson lower bound
    at level a is a^(1/n), so the object stops at the first look n with a^(1/n) >= Phi(r_max / sigma);
    its radius is sigma * Phi^-1(a^(1/n))."""
    sigma, alpha, n_max, radii = 0.5, 0.001, 100_000, [0.25, 0.5, 1.0]
    looks = _looks(n_max)
    level = alpha / (len(looks) * 2)
    stop = next(n for n in looks if level ** (1 / n) >= norm.cdf(max(radii) / sigma))
    model = LinearTwoClass(W)
    smooth = Smooth(model, num_classes=2, sigma=sigma)
    out = smooth.certify_adaptive(images_with_p(np.full(3, 1 - 1e-12), sigma), radii, alpha=alpha, n_max=n_max,
                                  batch_size=100, generator=torch.Generator().manual_seed(3))
    assert isinstance(out, AdaptiveCertificate)
    assert out.samples.tolist() == [stop] * 3
    assert model.rows == 3 * stop  # every model evaluation is counted in samples
    assert out.certified.all() and out.prediction.tolist() == [1, 1, 1]
    assert out.radius.tolist() == pytest.approx([sigma * norm.ppf(level ** (1 / stop))] * 3, rel=1e-9)
    assert out.certified.shape == (3, 3) and out.radius.dtype == torch.float64 and out.samples.dtype == torch.int64


def test_samples_count_every_evaluation_and_seed_reproduces():
    sigma = 0.5
    x = images_with_p(np.array([0.55, 0.9, 0.999, 0.3, 0.7]), sigma)
    model = LinearTwoClass(W)
    smooth = Smooth(model, num_classes=2, sigma=sigma)
    a = smooth.certify_adaptive(x, [0.1, 0.4], alpha=0.01, n_max=2000, batch_size=97,
                                generator=torch.Generator().manual_seed(4))
    assert model.rows == int(a.samples.sum())
    assert a.samples.max() <= 2000 and a.samples.min() >= 32
    b = smooth.certify_adaptive(x, [0.1, 0.4], alpha=0.01, n_max=2000, batch_size=97,
                                generator=torch.Generator().manual_seed(4))
    for field in ("prediction", "certified", "radius", "samples", "p_lower"):
        assert torch.equal(getattr(a, field), getattr(b, field))


class NaNAfter(nn.Module):
    def forward(self, x):
        out = torch.stack([x.flatten(1).sum(1), -x.flatten(1).sum(1)], 1)
        out[-1, 0] = float("nan")
        return out


def test_bad_input_raises():
    smooth = Smooth(LinearTwoClass(W), num_classes=2, sigma=0.5)
    x = torch.zeros(2, 1, 2, 2)
    kw = dict(alpha=0.01, n_max=100, batch_size=64)
    with pytest.raises(ValueError, match="NaN/Inf"):
        Smooth(NaNAfter(), 2, 0.5).certify_adaptive(x, [0.1], **kw)
    with pytest.raises(ValueError, match="radii"):
        smooth.certify_adaptive(x, [-0.1], **kw)
    with pytest.raises(ValueError, match="radii"):
        smooth.certify_adaptive(x, [float("nan")], **kw)
    with pytest.raises(ValueError, match="radii"):
        smooth.certify_adaptive(x, [], **kw)
    with pytest.raises(ValueError, match="alpha"):
        smooth.certify_adaptive(x, [0.1], alpha=1.0, n_max=100, batch_size=64)
    with pytest.raises(TypeError, match="n_max"):
        smooth.certify_adaptive(x, [0.1], alpha=0.01, n_max=10.5, batch_size=64)
    with pytest.raises(TypeError, match="float"):
        smooth.certify_adaptive(x.long(), [0.1], **kw)
    with pytest.raises(ValueError, match="non-empty"):
        smooth.certify_adaptive(x[:0], [0.1], **kw)
    with pytest.raises(ValueError, match=r"expected \(batch, 3\) logits"):
        Smooth(LinearTwoClass(W), 3, 0.5).certify_adaptive(x, [0.1], **kw)
