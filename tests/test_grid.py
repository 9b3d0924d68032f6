"""The evaluation grid and the church-window map on tiny models."""
import numpy as np
import pytest
import torch
from torch import nn

from advrobust import redshift
from advrobust.attacks import FGSM, PGD, OnePixel, gaussian_noise
from advrobust.evaluate import NATURAL, GridCell, Outcome, church_window, evaluate_grid, natural
from advrobust.metrics import (
    classification_metrics, distance_summary, latent_distances, photoz_metrics, success_rate,
)


class TinyClassifier(nn.Module):
    """features: flatten -> linear(8); head: linear(3)."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Linear(2 * 6 * 6, 8)
        self.head = nn.Linear(8, 3)
        self.n_outputs = 3

    def features(self, x):
        return torch.tanh(self.body(x.flatten(1)))

    def forward(self, x):
        return self.head(self.features(x))


class TinyPhotoz(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.net = nn.Linear(2 * 6 * 6 + 1, 10)
        self.register_buffer("bin_centres", redshift.bin_centres(10, 1.0).float())

    def forward(self, x, ebv):
        return self.net(torch.cat([x.flatten(1), ebv.view(-1, 1)], 1))


def _data(n=24):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 2, 6, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


ATTACKS = {
    "FGSM": lambda m: FGSM(m, eps=0.1),
    "PGD-inf": lambda m: PGD(m, eps=0.1, steps=3),
    "one-pixel": lambda m: OnePixel(m, pixels=1, population=20, max_iter=3, seed=0),
    "gaussian": natural(gaussian_noise, sigma=0.2, seed=3),
}


def test_grid_classifier_scores_and_batch_independence():
    x, y = _data()
    models = {"a": TinyClassifier(0), "b": TinyClassifier(1)}
    r1 = evaluate_grid(models, ATTACKS, x, y, batch_size=24, keep_distances=True)
    r2 = evaluate_grid(models, {k: v for k, v in ATTACKS.items() if k != "one-pixel"}, x, y, batch_size=5,
                       keep_predictions=True)
    assert r1.columns() == [NATURAL, "FGSM", "PGD-inf", "one-pixel", "gaussian"]
    for name, m in models.items():
        with torch.no_grad():
            ref = classification_metrics(y, m(x).argmax(1), 3)
            ref_fgsm = classification_metrics(y, m(FGSM(m, eps=0.1)(x, y)).argmax(1), 3)
        assert r1.scores[name][NATURAL]["accuracy"] == pytest.approx(ref["accuracy"])
        assert r1.scores[name]["FGSM"]["f1"] == pytest.approx(ref_fgsm["f1"])
        with torch.no_grad():
            assert np.array_equal(r2.predictions[name][NATURAL], m(x).argmax(1).numpy())
            assert np.array_equal(r2.predictions[name]["FGSM"], m(FGSM(m, eps=0.1)(x, y)).argmax(1).numpy())
        # the deterministic attacks do not depend on the batch size (the noise draws follow the batches)
        for a in ("FGSM", "PGD-inf"):
            assert r2.scores[name][a]["accuracy"] == pytest.approx(r1.scores[name][a]["accuracy"])
            assert r2.scores[name][a]["latent"]["mean"] == pytest.approx(r1.scores[name][a]["latent"]["mean"])
        assert r1.scores[name]["FGSM"]["latent"]["mean"] > 0
        assert r1.distances[name]["gaussian"].shape == (24,)
        it = r1.scores[name]["one-pixel"]["iterations"]
        assert it["max_iter"] == 3 and it["n_success"] + it["n_failed"] == 24
    # the seeded noise is the same for every call
    r3 = evaluate_grid(models, {"gaussian": ATTACKS["gaussian"]}, x, y, batch_size=24)
    assert r3.scores["a"]["gaussian"]["accuracy"] == r1.scores["a"]["gaussian"]["accuracy"]
    cells = r1.cells()
    assert cells["b"]["FGSM"] == r1.scores["b"]["FGSM"]["accuracy"]


def test_grid_zero_eps_equals_natural():
    x, y = _data(10)
    r = evaluate_grid({"a": TinyClassifier()}, {"FGSM0": lambda m: FGSM(m, eps=0.0)}, x, y)
    assert r.scores["a"]["FGSM0"]["accuracy"] == r.scores["a"][NATURAL]["accuracy"]
    assert r.scores["a"]["FGSM0"]["latent"]["mean"] == 0.0


def test_grid_photoz():
    x, _ = _data(12)
    z = torch.linspace(0.1, 0.9, 12)
    ebv = torch.full((12,), 0.02)
    m = TinyPhotoz()
    r = evaluate_grid({"p": m}, {"noise": natural(gaussian_noise, sigma=0.01)}, x, z, ebv, task="photoz",
                      batch_size=5, keep_predictions=True)
    with torch.no_grad():
        ref = photoz_metrics(redshift.z_phot(m(x, ebv), m.bin_centres), z)
        np.testing.assert_allclose(r.predictions["p"][NATURAL], redshift.z_phot(m(x, ebv), m.bin_centres).numpy(),
                                   rtol=1e-6)
    assert r.predictions["p"]["noise"].shape == (12,) and r.predictions["p"]["noise"].dtype == np.float64
    for key in ("bias", "sigma_mad", "eta"):
        assert r.scores["p"][NATURAL][key] == pytest.approx(ref[key], rel=1e-6)
    assert set(r.cells()["p"]["noise"]) == {"bias", "sigma_mad", "eta"}
    assert "latent" not in r.scores["p"]["noise"]  # no features()


def test_grid_on_adversarial_receives_every_adversarial_batch():
    x, y = _data(11)
    models = {"a": TinyClassifier(0), "b": TinyClassifier(1)}
    seen = []
    r = evaluate_grid(models, {"FGSM": ATTACKS["FGSM"], "gaussian": ATTACKS["gaussian"]}, x, y, batch_size=4,
                      on_adversarial=lambda model, attack, x_adv: seen.append((model, attack, x_adv.clone())))
    # one call per (model, batch, attack), model by model, batch by batch
    assert [(m, a) for m, a, _ in seen] == [(m, a) for m in models for _ in range(3) for a in ("FGSM", "gaussian")]
    for name, m in models.items():
        got = {a: torch.cat([xa for mm, aa, xa in seen if (mm, aa) == (name, a)]) for a in ("FGSM", "gaussian")}
        torch.testing.assert_close(got["FGSM"], FGSM(m, eps=0.1)(x, y))  # per-sample: batch-independent
        with torch.no_grad():  # the images handed over are the images scored
            for a in ("FGSM", "gaussian"):
                ref = classification_metrics(y, m(got[a]).argmax(1), 3)
                assert r.scores[name][a]["accuracy"] == pytest.approx(ref["accuracy"])


def test_grid_cell_over_batches_equals_the_functional_metrics_on_all():
    g = torch.Generator().manual_seed(2)
    y, pred = torch.randint(0, 3, (17,), generator=g), torch.randint(0, 3, (17,), generator=g)
    success = torch.rand(17, generator=g) > 0.5
    clean, adv = torch.randn(17, 4, generator=g), torch.randn(17, 4, generator=g)
    cell = GridCell("classifier", 3, attack=True, latent=True, keep_predictions=True)
    for sl in (slice(0, 5), slice(5, 12), slice(12, 17)):
        cell.update(pred[sl], y[sl], Outcome(x_adv=torch.empty(0), logits=torch.empty(0), features=adv[sl],
                                             success=success[sl]), clean[sl])
    out = cell.compute()
    ref = classification_metrics(y, pred, 3)
    for key in ("accuracy", "precision", "recall", "f1"):
        assert out[key] == pytest.approx(ref[key], rel=1e-12)
    assert out["success_rate"] == success_rate(success) and "iterations" not in out
    ref_latent = distance_summary(latent_distances(clean, adv))
    assert out["latent"] == pytest.approx(ref_latent, rel=1e-12)
    np.testing.assert_array_equal(cell.predictions(), pred.numpy())
    np.testing.assert_allclose(cell.distances(), latent_distances(clean, adv), rtol=1e-12)
    natural_cell = GridCell("photoz", outlier_threshold=0.04)
    z = torch.linspace(0.1, 0.9, 6, dtype=torch.float64)
    zp = z + torch.linspace(0.0, 0.1, 6, dtype=torch.float64)
    natural_cell.update(zp[:4], z[:4])
    natural_cell.update(zp[4:], z[4:])
    ref = photoz_metrics(zp, z, 0.04)
    assert 0 < ref["eta"] < 1 and natural_cell.compute() == pytest.approx(ref, rel=1e-12)


def test_grid_errors():
    x, y = _data(4)
    with pytest.raises(ValueError, match="task"):
        evaluate_grid({"a": TinyClassifier()}, {}, x, y, task="regression")
    with pytest.raises(ValueError, match="clean column"):
        evaluate_grid({"a": TinyClassifier()}, {NATURAL: ATTACKS["FGSM"]}, x, y)


def test_church_window_matches_direct_predictions():
    m = TinyClassifier()
    x, _ = _data(1)
    g = torch.Generator().manual_seed(5)
    d1, d2 = torch.randn(x.shape, generator=g), torch.randn(x.shape, generator=g)
    cw = church_window(m, x[0], d1[0], d2[0], extent=(-1.0, 1.0), steps=5)
    assert cw.classes.shape == (5, 5) and np.all(cw.confidence > 1 / 3 - 1e-9)
    with torch.no_grad():
        assert cw.clean_class == int(m(x).argmax()) == cw.classes[2, 2]
        # row i <-> b[i] along d2, column j <-> a[j] along d1
        assert cw.classes[4, 0] == int(m(x - d1 + d2).argmax())
        assert cw.classes[1, 3] == int(m(x + 0.5 * d1 - 0.5 * d2).argmax())
    with pytest.raises(ValueError, match="steps"):
        church_window(m, x[0], d1[0], d2[0], steps=1)
