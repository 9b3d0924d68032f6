"""Tests of advrobust.evaluate: transfer (black-box) evaluation of adversarial samples on other models."""
from __future__ import annotations

import pytest
import torch

from advrobust import redshift
from advrobust.attacks import FGSM, PGD, OnePixel
from advrobust.evaluate import transfer_evaluate
from advrobust.metrics import photoz_metrics
from attack_helpers import TinyPhotoz, data, small_cnn


def test_transfer_classifier():
    a, b = small_cnn().eval(), small_cnn(n_classes=3).eval()
    with torch.no_grad():
        b[0].weight.mul_(-1)
    x, y = data(B=8)
    out = transfer_evaluate(PGD(a, eps=0.5, steps=3), x, y, [a, b])
    assert set(out.scores) == {"model0", "model1"}
    assert set(out.scores["model0"]) == {"clean_accuracy", "adv_accuracy", "flip_rate"}
    out2 = transfer_evaluate(None, x, y, {"b": b}, x_adv=out.x_adv)
    assert out2.scores["b"] == out.scores["model1"]
    # every attack is called the same way (OnePixel too), as is any callable returning a tensor
    atk = OnePixel(a, population=8, max_iter=1, seed=0)
    out3 = transfer_evaluate(atk, x, y, {"a": a})
    torch.testing.assert_close(out3.x_adv, atk(x, y))
    out4 = transfer_evaluate(lambda xx, yy: xx + 0.1, x, y, {"a": a})
    torch.testing.assert_close(out4.x_adv, x + 0.1)


def test_transfer_photoz_scores_use_the_redshift_formulas():
    model, other = TinyPhotoz().eval(), TinyPhotoz().eval()
    with torch.no_grad():
        other.fc.weight.mul_(1.1)
    x, ebv, z = torch.randn(3, 5, 8, 8), torch.rand(3) * 0.1, torch.rand(3) * 0.9
    out = transfer_evaluate(FGSM(model, eps=0.1, loss="photoz_ce"), x, z, {"src": model, "other": other}, ebv,
                            task="photoz")
    assert set(out.scores) == {"src", "other"} and "adv_sigma_mad" in out.scores["other"]
    assert "| src |" in out.table()
    with torch.no_grad():
        za = torch.softmax(other(out.x_adv, ebv), 1) @ other.bin_centres
        zc = torch.softmax(other(x, ebv), 1) @ other.bin_centres
    for k, v in photoz_metrics(za, z).items():
        assert out.scores["other"][f"adv_{k}"] == pytest.approx(v)
    assert out.scores["other"]["mean_abs_shift"] == pytest.approx(float((za - zc).abs().mean()), rel=1e-5)
    torch.testing.assert_close(redshift.z_phot(other(x, ebv), other.bin_centres), zc)


def test_transfer_checks_batch_size_and_precomputed_samples():
    a = small_cnn().eval()
    x, y = data()
    with pytest.raises(ValueError, match="batch_size"):
        transfer_evaluate(None, x, y, [a], x_adv=x, batch_size=0)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="x_adv"):
        transfer_evaluate(None, x, y, [a], x_adv=bad)
    with pytest.raises(ValueError, match="bin_centres"):
        transfer_evaluate(None, x, y, [a], x_adv=x, task="photoz")
