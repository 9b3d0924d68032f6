"""The demo's certification steps on tiny inputs (the whole demo is tests/test_demo.py): the adaptive
morphology table equals certify_adaptive, the certified photo-z table equals SmoothRegression.certify."""
import numpy as np
import pytest
import torch

from advrobust import models
from advrobust.data import simulate_photoz, sky_sigma
from advrobust.defenses import Smooth, SmoothRegression, certified_non_outlier
from advrobust.demo.config import MorphologyConfig, PhotozConfig
from advrobust.demo.morphology import CERTIFY_RADII_SIGMA, _certify_adaptive
from advrobust.demo.photoz import CERTIFY_ALPHA, CERTIFY_N, CERTIFY_RADII_SIGMA as PZ_RADII, certify_photoz
from advrobust.demo.stage import StageResult

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_adaptive_morphology_table_equals_certify_adaptive():
    torch.manual_seed(0)
    model = models.create("morphology_small", image_size=32).eval()
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    cfg = MorphologyConfig(n_certify=6, n0=20, n=200, noise_sigma=0.1)
    fixed = Smooth(model, 3, 0.1).certify_batch(x, 20, 200, cfg.alpha, 64, generator=torch.Generator().manual_seed(5))
    out = StageResult()
    _certify_adaptive(out, cfg, model, "noisy", x, y, 3, torch.device("cpu"), fixed)
    radii = [r * 0.1 for r in CERTIFY_RADII_SIGMA]
    cert = Smooth(model, 3, 0.1).certify_adaptive(x, radii, alpha=cfg.alpha, n_max=2200, batch_size=500,
                                                  generator=torch.Generator().manual_seed(4))
    (table,) = out.tables
    adaptive = table.rows["adaptive (n_max = 2,200)"]
    for j, r in enumerate(radii):
        expected = float(((cert.prediction == y) & cert.certified[:, j]).double().mean())
        assert adaptive[f"radius {r:g}"] == pytest.approx(expected)
    assert adaptive["median samples"] == f"{np.median(cert.samples.numpy()):,.0f}"
    assert out.facts["morphology/adaptive_median_samples"] == float(np.median(cert.samples.numpy()))
    assert "alpha = 0.001" in table.note and "n_max = 2,200" in table.note and "not the largest radius" in table.note
    assert len(out.figures) == 1 and out.findings


def test_certified_photoz_table_equals_smooth_regression():
    sim = simulate_photoz(12, seed=3)
    torch.manual_seed(0)
    model = models.create("photoz_small").eval()
    x, z, ebv = (torch.from_numpy(sim[k]).float() for k in ("images", "z_spec", "ebv"))
    out = StageResult()
    certify_photoz(out, PhotozConfig(n_attack=40), model, "baseline", (x, z, ebv), sky_sigma(sim["images"]), 7)
    (table,) = out.tables
    sigma = float(np.median(sky_sigma(sim["images"])))
    assert len(table.rows) == len(PZ_RADII) and "alpha = 0.001" in table.note and "n = 100" in table.note
    for (label, row), r_sigma in zip(table.rows.items(), PZ_RADII):
        cert = SmoothRegression(model, sigma).certify(x[:4], r_sigma * sigma, ebv[:4], alpha=CERTIFY_ALPHA,
                                                      n=CERTIFY_N, batch_size=500,
                                                      generator=torch.Generator().manual_seed(7))
        good = certified_non_outlier(cert.lo, cert.hi, z[:4].double())
        assert row["certified non-outliers"] == pytest.approx(float(good.double().mean()))
        assert row["median interval width (z)"] == f"{np.median((cert.hi - cert.lo).numpy()):.4f}"
    assert len(out.figures) == 1 and out.findings
