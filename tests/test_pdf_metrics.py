"""P.d.f. metrics and RAIL's point metrics against independent references: properscoring's CRPS by
quadrature, qp's PIT class on the same ensemble, closed forms of KS / CvM, scipy's Wasserstein
distance, hand-computed cases and RAIL's formulas."""
import numpy as np
import pytest
import torch
from scipy import stats

import advrobust.metrics.pdf as pdf_module
from advrobust.metrics import (
    NzShiftAccumulator, PdfAccumulator, RailPointAccumulator, nz_compare, nz_shift, pdf_columns, pdf_metrics,
    pit_statistics, rail_point_metrics, stacked_nz,
)


def _sample(n=40, bins=7, seed=0):
    """Random p.d.f.s on uneven edges with empty bins; z_spec inside, on edges, below and above."""
    rng = np.random.default_rng(seed)
    edges = np.concatenate([[0.0], np.cumsum(rng.uniform(0.05, 0.4, bins))])
    p = rng.dirichlet(np.full(bins, 0.7), size=n)
    p[rng.random((n, bins)) < 0.2] = 0.0
    p[:, 0] += 1e-3
    p /= p.sum(axis=1, keepdims=True)
    z = rng.uniform(edges[0] - 0.2, edges[-1] + 0.2, n)
    z[:bins + 1] = edges  # exactly on every edge
    return p, z, edges


def _cdf(p_row, edges):
    knots = np.concatenate([[0.0], np.cumsum(p_row)])
    return lambda x: np.interp(x, edges, knots, left=0.0, right=1.0)


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")  # quad at the kinks, checked below
def test_crps_matches_properscoring_quadrature():
    properscoring = pytest.importorskip("properscoring")
    p, z, edges = _sample()
    crps = pdf_columns(p, z, edges)["crps"]
    # quadrature over [min(edges[0], z), max(edges[-1], z)], outside which the integrand is 0; its
    # error-estimate check trips on the kinks of F at the edges (tol=1 turns it off: the comparison
    # below checks instead; tol=None fails in properscoring 0.1)
    reference = [properscoring.crps_quadrature(zi, _cdf(pi, edges), xmin=min(edges[0], zi),
                                               xmax=max(edges[-1], zi), tol=1.0) for pi, zi in zip(p, z)]
    np.testing.assert_allclose(crps, np.ravel(reference), rtol=1e-6)  # quad's error near kinks: ~1e-7


def test_crps_closed_forms():
    # uniform on [0, 1]: CRPS(y) = y^2 - y + 1/3 inside; a point mass at the bin [0, 1] of width 1 too
    z = np.array([0.0, 0.25, 0.5, 1.0, 1.5, -0.5])
    crps = pdf_columns(np.full((6, 4), 0.25), z, np.linspace(0, 1, 5))["crps"]
    inside = z[:4] ** 2 - z[:4] + 1 / 3
    np.testing.assert_allclose(crps, np.concatenate([inside, [1 / 3 + 0.5, 1 / 3 + 0.5]]), rtol=1e-14)


def _qp_pit(p, z, edges):
    qp = pytest.importorskip("qp")
    from qp.metrics.pit import PIT
    return PIT(qp.Ensemble(qp.hist, data=dict(bins=edges, pdfs=p / np.diff(edges))), z)


def test_pit_matches_qp():
    p, z, edges = _sample(n=300, seed=1)  # z_spec on edges, outside, in empty bins
    np.testing.assert_allclose(pdf_columns(p, z, edges)["pit"], _qp_pit(p, z, edges).pit_samps, rtol=0, atol=1e-15)


@pytest.mark.filterwarnings("ignore::UserWarning")  # scipy's notes to qp's anderson_ksamp call
def test_pit_statistics_match_qp():
    # PIT strictly inside (0, 1): qp's PIT values carry rounding errors (1 + 4e-16 for a z_spec above
    # the edges) that change the ties the rank-based AD statistic sees; away from ties both agree
    p, _, edges = _sample(n=300, seed=1)
    p = 0.9 * p + 0.1 / p.shape[1]
    z = np.random.default_rng(8).uniform(edges[0] + 0.01, edges[-1] - 0.01, p.shape[0])
    ours, theirs = pdf_metrics(p, z, edges), _qp_pit(p, z, edges)
    assert ours["pit_ks"] == pytest.approx(theirs.evaluate_PIT_KS().statistic, rel=1e-10)
    assert ours["pit_cvm"] == pytest.approx(theirs.evaluate_PIT_CvM().statistic, rel=1e-10)
    assert ours["pit_ad"] == pytest.approx(theirs.evaluate_PIT_anderson_ksamp().statistic, rel=1e-10)
    trimmed = pit_statistics(ours["pit"], ad_range=(0.1, 0.9))["pit_ad"]
    assert trimmed == pytest.approx(theirs.evaluate_PIT_anderson_ksamp(0.1, 0.9).statistic, rel=1e-10)
    assert trimmed != pytest.approx(ours["pit_ad"])


def test_pit_statistics_match_scipy():
    u = np.random.default_rng(2).beta(0.7, 1.3, 57)
    s = pit_statistics(u)
    assert s["pit_ks"] == pytest.approx(stats.kstest(u, "uniform").statistic, rel=1e-13)
    assert s["pit_cvm"] == pytest.approx(stats.cramervonmises(u, "uniform").statistic, rel=1e-13)
    # ties and values exactly 0 and 1 (z_spec outside the edges)
    t = np.array([0.0, 0.0, 0.3, 0.3, 0.3, 0.9, 1.0, 1.0])
    assert pit_statistics(t)["pit_ks"] == pytest.approx(stats.kstest(t, "uniform").statistic, rel=1e-13)
    assert pit_statistics(t)["pit_cvm"] == pytest.approx(stats.cramervonmises(t, "uniform").statistic, rel=1e-13)
    # RAIL's limits, strict: 1e-4 and 1 - 1e-4 themselves are not outliers
    edge_cases = pit_statistics([0.0, 5e-5, 1e-4, 0.5, 1 - 1e-4, 0.99995, 1.0])
    assert edge_cases["pit_outlier_rate"] == pytest.approx(4 / 7)


def test_pit_hand_computed():
    pit = pdf_columns([[0.2, 0.3, 0.5]] * 5, [-1.0, 0.0, 0.15, 0.5, 2.0], [0.0, 0.1, 0.2, 1.0])["pit"]
    np.testing.assert_allclose(pit, [0.0, 0.0, 0.35, 0.5 + 0.5 * 0.3 / 0.8, 1.0], rtol=1e-14)


def test_cde_loss_hand_computed():
    # row 1: f = 1 on [0, 0.5), 0.5 on [0.5, 1.5]: int f^2 = 0.5 + 0.25 = 0.75, f(1.0) = 0.5 -> -0.25
    # row 2: f = 2 on [0, 0.5): int f^2 = 2, z_spec = 2 outside -> f = 0 -> 2
    m = pdf_metrics([[0.5, 0.5], [1.0, 0.0]], [1.0, 2.0], [0.0, 0.5, 1.5])
    assert m["cde_loss"] == pytest.approx((-0.25 + 2.0) / 2, rel=1e-14)
    assert m["crps_mean"] == pytest.approx(np.mean(m["crps"]))


def test_nz_hand_computed():
    edges = [0.0, 1.0, 2.0, 3.0]
    s = nz_shift([[1, 0, 0], [0, 1, 0]], [[0, 0, 1]], edges)
    np.testing.assert_allclose(s["nz_clean"], [0.5, 0.5, 0.0])
    assert (s["mean_z_clean"], s["mean_z_perturbed"], s["mean_shift"]) == pytest.approx((1.0, 2.5, 1.5))
    assert s["wasserstein1"] == pytest.approx(1.5)  # ordered CDFs: W1 = the mean shift
    # crossing CDFs: F_p - F_c = 0, 0.5, -0.5, 0 at the edges: 0.25 + 0.25 + 0.25, the mean unchanged
    s = nz_shift([[0, 1, 0]], [[0.5, 0, 0.5]], edges)
    assert (s["mean_shift"], s["wasserstein1"]) == pytest.approx((0.0, 0.75))


def test_wasserstein_matches_scipy_on_subdivided_bins():
    rng = np.random.default_rng(3)
    edges = np.concatenate([[0.1], 0.1 + np.cumsum(rng.uniform(0.05, 0.3, 9))])
    a, b = rng.dirichlet(np.ones(9), 30), rng.dirichlet(np.ones(9), 20)
    s = nz_shift(a, b, edges)
    m = 4000  # each bin's mass spread evenly over m points: W1 error O(width / m)
    points = (edges[:-1, None] + (np.arange(m) + 0.5) / m * np.diff(edges)[:, None]).ravel()
    reference = stats.wasserstein_distance(points, points, np.repeat(a.mean(0), m), np.repeat(b.mean(0), m))
    assert s["wasserstein1"] == pytest.approx(reference, rel=1e-5)
    centres = (edges[:-1] + edges[1:]) / 2
    assert s["mean_shift"] == pytest.approx((b.mean(0) - a.mean(0)) @ centres, rel=1e-12)


def test_rail_point_metrics_against_rails_formulas():
    rng = np.random.default_rng(4)
    z_spec = rng.uniform(0.0, 3.0, 501)
    dz = np.concatenate([rng.normal(0.01, 0.03, 450), rng.uniform(-0.5, 0.5, 51)])
    z_phot = z_spec + dz * (1 + z_spec)
    ez = (z_phot - z_spec) / (1.0 + z_spec)  # RAIL's PointStatsEz
    x75, x25 = np.percentile(ez, [75.0, 25.0])
    sigma = (x75 - x25) / 1.349
    expected = {"bias_median": np.median(ez), "sigma_iqr": sigma,
                "outlier_rate_rail": np.mean(np.fabs(ez) > np.maximum(0.06, 3.0 * sigma))}
    m = rail_point_metrics(torch.tensor(z_phot), z_spec)
    assert m == pytest.approx(expected, rel=1e-12)
    assert 3 * sigma > 0.06  # this sample exercises the 3 sigma_IQR branch; the floor one below


def test_rail_point_metrics_hand_computed():
    # dz (z_spec = 0) sorted: -0.065 -0.01 0 0 0.005 0.01 0.055 0.07; NumPy's linear percentiles at
    # positions 1.75 and 5.25: q25 = -0.0025, q75 = 0.02125; 3 sigma_IQR = 0.0528 < 0.06, the floor
    dz = [0.0, 0.0, 0.01, -0.01, 0.07, 0.005, -0.065, 0.055]
    m = rail_point_metrics(dz, np.zeros(8))
    assert m["bias_median"] == pytest.approx(0.0025)
    assert m["sigma_iqr"] == pytest.approx((0.02125 + 0.0025) / 1.349)
    assert m["outlier_rate_rail"] == pytest.approx(2 / 8)  # 0.07 and -0.065; 0.055 only above 3 sigma
    assert set(m).isdisjoint({"bias", "sigma_mad", "eta"})


def test_accumulators_over_batches_equal_the_functions():
    p, z, edges = _sample(n=101, seed=5)
    q, _, _ = _sample(n=101, seed=6)
    acc, nz_acc, rail_acc = PdfAccumulator(edges), NzShiftAccumulator(edges), RailPointAccumulator()
    for s in (slice(0, 13), slice(13, 14), slice(14, 101)):
        acc.update(torch.from_numpy(p[s]), torch.from_numpy(z[s]))
        nz_acc.update(p[s], q[s][: max(1, len(q[s]) // 2)])
        rail_acc.update(z[s] + 0.01, z[s] + 0.5)
    whole, got = pdf_metrics(p, z, edges), acc.compute()
    for key in ("pit", "crps"):
        np.testing.assert_allclose(got[key], whole[key], rtol=1e-14, atol=1e-15)
    for key in ("crps_mean", "pit_ks", "pit_cvm", "pit_ad", "pit_outlier_rate", "cde_loss"):
        assert got[key] == pytest.approx(whole[key], rel=1e-12), key
    np.testing.assert_allclose(got["nz"], stacked_nz(p, edges), rtol=1e-12)
    assert got["n"] == 101
    q_seen = np.concatenate([q[0:6], q[13:14], q[14:57]])
    expected = nz_shift(p, q_seen, edges)
    got_nz = nz_acc.compute()
    for key in ("mean_shift", "wasserstein1"):
        assert got_nz[key] == pytest.approx(expected[key], rel=1e-12)
    assert rail_acc.compute() == pytest.approx(rail_point_metrics(z + 0.01, z + 0.5), rel=1e-12)


def test_chunking_does_not_change_columns(monkeypatch):
    p, z, edges = _sample(n=50, seed=7)
    whole = pdf_columns(p, z, edges)
    monkeypatch.setattr(pdf_module, "_CHUNK_ROWS", 7)
    chunked = pdf_columns(p, z, edges)
    for key in whole:  # BLAS matrix-vector products may round differently per chunk size
        np.testing.assert_allclose(chunked[key], whole[key], rtol=1e-14, atol=1e-15)


def test_float32_softmax_rows_are_accepted():
    logits = torch.randn(5, 180, generator=torch.Generator().manual_seed(0))
    pit = pdf_columns(torch.softmax(logits, 1), torch.full((5,), 1.3), np.linspace(0, 4, 181))["pit"]
    assert np.all((pit > 0) & (pit < 1))


@pytest.mark.parametrize("call, match", [
    (lambda: pdf_metrics([[0.5, 0.5]], [0.1], [0.0, 1.0]), r"shape \(N, 1\)"),
    (lambda: pdf_metrics([0.5, 0.5], [0.1], [0.0, 0.5, 1.0]), "shape"),
    (lambda: pdf_metrics([[0.5, 0.5]], [0.1, 0.2], [0.0, 0.5, 1.0]), "2 values"),
    (lambda: pdf_metrics([[0.5, 0.5]], [0.1], [0.0, 0.5, 0.5]), "strictly increasing"),
    (lambda: pdf_metrics([[0.5, 0.5]], [0.1], [0.0, np.nan, 1.0]), "NaN"),
    (lambda: pdf_metrics([[1.5, -0.5]], [0.1], [0.0, 0.5, 1.0]), "negative"),
    (lambda: pdf_metrics([[np.nan, 0.5]], [0.1], [0.0, 0.5, 1.0]), "NaN"),
    (lambda: pdf_metrics([[0.5, 0.6]], [0.1], [0.0, 0.5, 1.0]), "sum to 1"),
    (lambda: pdf_metrics([[0.5, 0.5]], [np.inf], [0.0, 0.5, 1.0]), "NaN or infinite"),
    (lambda: pit_statistics([0.5, 1.2]), r"\[0, 1\]"),
    (lambda: pit_statistics([0.5, 0.2], ad_range=(0.5, 0.5)), "ad_range"),
    (lambda: nz_compare([0.5, 0.5], [1.0], [0.0, 0.5, 1.0]), "nz_perturbed"),
    (lambda: rail_point_metrics([0.1], [0.1, 0.2]), "same length"),
    (lambda: PdfAccumulator([0.0, 0.5, 1.0]).compute(), "no update"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_inputs_are_not_modified():
    p = np.array([[0.2, 0.8001], [0.5, 0.5]])
    t = torch.tensor(p)
    pdf_metrics(p, [0.1, 0.2], [0.0, 0.5, 1.0])
    pdf_metrics(t, [0.1, 0.2], [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(p, [[0.2, 0.8001], [0.5, 0.5]])
    assert torch.equal(t, torch.tensor([[0.2, 0.8001], [0.5, 0.5]], dtype=torch.float64))
