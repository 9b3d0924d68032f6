"""Photo-z p.d.f.s under attack end to end: the scan's pit / crps columns equal pdf_columns of the
model's p.d.f.s computed here, the qp files of `attack` and `scan` read back by qp.read with the same
p.d.f.s and ids, the report holds the p.d.f. tables and figures, and PdfUnderAttack equals the
functional metrics on all objects."""
import glob
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from advrobust import models
from advrobust.data import save_arrays, simulate_photoz
from advrobust.metrics import nz_shift, pdf_columns, pdf_metrics, photoz_metrics, rail_point_metrics
from advrobust.plots import plot_nz, plot_pit_histograms
from advrobust.report import PdfUnderAttack, pdf_tables, pdf_vs_point
from cli_runner import run_cli

N, CHUNK = 12, 8


@pytest.fixture(scope="module")
def photoz(tmp_path_factory):
    """A random-weight photoz_small (z_max 0.4) and 12 simulated galaxies in an .npz (images, z, ebv)."""
    d = tmp_path_factory.mktemp("pdf")
    sim = simulate_photoz(N, seed=4, z_range=(0.02, 0.4))
    save_arrays(d / "gal.npz", {"images": sim["images"], "z": sim["z_spec"], "ebv": sim["ebv"]})
    torch.manual_seed(0)
    model = models.create("photoz_small", z_max=0.4)
    models.save(model, d / "model.safetensors")
    model = models.load(d / "model.safetensors").eval()
    x, ebv = torch.from_numpy(sim["images"]), torch.from_numpy(sim["ebv"]).float()
    with torch.no_grad():
        pdf = model.pdf(x, ebv).double()
    return d, model, sim, pdf


def _data_args(d):
    return ["--model", d / "model.safetensors", "--data", d / "gal.npz", "--key", "images", "--eps", "0.01",
            "--batch-size", "4", "--attacks", "fgsm,noise"]


def _qp_pdfs(ensemble):
    return ensemble.objdata["pdfs"] * np.diff(ensemble.metadata["bins"].ravel())


def test_scan_pdf_columns_and_qp_files_equal_the_models_pdfs(photoz, tmp_path, capsys):
    qp = pytest.importorskip("qp")
    d, model, sim, pdf = photoz
    out = tmp_path / "cat.parquet"
    code, _, err = run_cli(capsys, "scan", *_data_args(d), "--zspec-column", "z", "--write-qp",
                           "--chunk-size", CHUNK, "--no-progress", "--out", out)
    assert code == 0, err
    cat = pq.read_table(out).to_pandas()
    edges = model.bin_edges
    expected = pdf_columns(pdf, sim["z_spec"], edges)
    np.testing.assert_allclose(cat["pit"], expected["pit"], atol=1e-5)
    np.testing.assert_allclose(cat["crps"], expected["crps"], rtol=1e-4, atol=1e-7)
    files = sorted(glob.glob(str(tmp_path / "cat.parquet.parts" / "qp" / "*.hdf5")))
    assert [os.path.basename(f) for f in files] == [f"{c}-{i:08d}.hdf5" for c in ("clean", "fgsm", "noise")
                                                     for i in (0, 1)]
    read = {c: [qp.read(f) for f in files if os.path.basename(f).startswith(c)] for c in ("clean", "fgsm", "noise")}
    for column, ensembles in read.items():
        p = np.concatenate([_qp_pdfs(e) for e in ensembles])
        np.testing.assert_array_equal(np.concatenate([e.ancil["id"] for e in ensembles]), np.arange(N))
        np.testing.assert_allclose(np.concatenate([e.ancil["z_spec"] for e in ensembles]), sim["z_spec"], rtol=1e-6)
        if column == "clean":
            np.testing.assert_allclose(p, pdf.numpy(), atol=1e-6)
            continue
        # the perturbed p.d.f.s of the files give the rows' z_phot, pit and crps of that attack
        np.testing.assert_allclose(p @ model.bin_centres.double().numpy(), cat[f"{column}_z_phot"], atol=1e-5)
        cols = pdf_columns(p, sim["z_spec"], edges)
        np.testing.assert_allclose(cat[f"{column}_pit"], cols["pit"], atol=1e-5)
        np.testing.assert_allclose(cat[f"{column}_crps"], cols["crps"], rtol=1e-4, atol=1e-7)


def test_scan_without_zspec_has_no_pdf_columns_and_a_classifier_refuses_the_flags(photoz, tmp_path, capsys):
    d, _, _, _ = photoz
    code, _, err = run_cli(capsys, "scan", *_data_args(d), "--no-progress", "--out", tmp_path / "c.parquet")
    assert code == 0, err
    assert not {"pit", "crps", "fgsm_pit"} & set(pq.read_table(tmp_path / "c.parquet").column_names)
    torch.manual_seed(0)
    models.save(models.create("morphology_small", image_size=32), tmp_path / "cls.safetensors")
    np.save(tmp_path / "im.npy", np.zeros((4, 3, 32, 32), np.float32))
    code, _, err = run_cli(capsys, "scan", "--model", tmp_path / "cls.safetensors", "--data", tmp_path / "im.npy",
                           "--zspec-column", "z", "--out", tmp_path / "x.parquet")
    assert code == 2 and "--zspec-column applies to photo-z models" in err


def test_write_qp_without_qp_says_how_to_install(photoz, tmp_path, capsys, monkeypatch):
    import sys

    d, _, _, _ = photoz
    monkeypatch.setitem(sys.modules, "qp", None)
    code, _, err = run_cli(capsys, "attack", *_data_args(d), "--write-qp", "--out", tmp_path / "r")
    assert code == 2 and "pip install qp-prob" in err


def test_attack_report_tables_figures_and_qp_files(photoz, tmp_path, capsys):
    qp = pytest.importorskip("qp")
    d, model, sim, pdf = photoz
    out = tmp_path / "report"
    code, _, err = run_cli(capsys, "attack", *_data_args(d), "--target", "z", "--write-qp", "--out", out)
    assert code == 0, err
    clean = qp.read(str(out / "pdf_clean.hdf5"))
    np.testing.assert_allclose(_qp_pdfs(clean), pdf.numpy(), atol=1e-6)
    np.testing.assert_array_equal(clean.ancil["id"], np.arange(N))
    for attack in ("fgsm", "noise"):
        assert qp.read(str(out / f"pdf_{attack}.hdf5")).npdf == N
    report = (out / "report.md").read_text()
    m = pdf_metrics(pdf, sim["z_spec"], model.bin_edges)
    assert "p.d.f. under attack" in report and "Point metrics: Campagne 2021 beside RAIL" in report
    assert f"| clean | {m['pit_ks']:.3f} |" in report and f"{m['crps_mean']:.4f}" in report
    assert "mean of the bin centres" in report  # the point estimate used is stated
    figures = os.listdir(out / "figures")
    assert any(f.startswith("PIT_histograms") and f.endswith(".png") for f in figures)
    assert any(f.startswith("n_z_of") and f.endswith(".png") for f in figures)


def test_accumulated_metrics_equal_the_functions_on_all_objects(photoz):
    d, model, sim, pdf = photoz
    x, z = torch.from_numpy(sim["images"]), torch.from_numpy(sim["z_spec"])
    ebv = torch.from_numpy(sim["ebv"])
    x_noisy = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        pdf_noisy = model.pdf(x_noisy, ebv.float()).double()
    collector = PdfUnderAttack({"m": model}, z, ebv, keep_pdfs=True)
    collector.add_clean(x, batch_size=5)
    for i in range(0, N, 5):  # as evaluate_grid's on_adversarial, batch by batch
        collector("m", "noisy", x_noisy[i:i + 5])
    res = collector.results()["m"]
    edges = model.bin_edges
    for column, p in (("natural", pdf), ("noisy", pdf_noisy)):
        want = pdf_metrics(p, z, edges)
        for key in ("pit_ks", "pit_cvm", "pit_ad", "pit_outlier_rate", "crps_mean", "cde_loss"):
            assert res[column][key] == pytest.approx(want[key], rel=1e-5, abs=1e-9), key
        z_phot = p @ model.bin_centres.double()
        for key, value in {**photoz_metrics(z_phot, z), **rail_point_metrics(z_phot, z)}.items():
            assert res[column][key] == pytest.approx(value, rel=1e-5, abs=1e-9), key
        assert res[column]["mae"] == pytest.approx(float((z_phot - z).abs().mean()), rel=1e-6)
    shift = nz_shift(pdf, pdf_noisy, edges)
    assert res["noisy"]["mean_shift"] == pytest.approx(shift["mean_shift"], abs=1e-7)
    assert res["noisy"]["wasserstein1"] == pytest.approx(shift["wasserstein1"], rel=1e-5)
    np.testing.assert_allclose(collector.pdfs("m")["noisy"], pdf_noisy.numpy(), atol=1e-6)
    tables = pdf_tables(collector.results(), objects=N)
    assert list(tables[0].rows) == ["clean", "noisy"] and tables[0].rows["clean"]["n(z) W1"] == "-"
    with pytest.raises(ValueError, match="only 12 given"):
        collector("m", "noisy", x_noisy[:1])


def test_pdf_vs_point_rule():
    clean = {"crps_mean": 0.02, "mae": 0.03}
    assert pdf_vs_point(clean, {"crps_mean": 0.06, "mae": 0.045})["verdict"] == "more"  # 3x vs 1.5x
    assert pdf_vs_point(clean, {"crps_mean": 0.03, "mae": 0.09})["verdict"] == "less"
    same = pdf_vs_point(clean, {"crps_mean": 0.04, "mae": 0.06})
    assert same == {"verdict": "as much", "crps_ratio": pytest.approx(2.0), "mae_ratio": pytest.approx(2.0)}


def test_pdf_plots():
    rng = np.random.default_rng(0)
    fig = plot_pit_histograms({"clean": rng.uniform(size=50), "a": rng.uniform(size=50) ** 2,
                               "b": rng.uniform(size=50), "c": rng.uniform(size=50), "d": rng.uniform(size=50)})
    assert len(fig.axes) == 5
    edges = np.linspace(0, 0.4, 5)
    fig = plot_nz(edges, {"clean": [0.1, 0.4, 0.4, 0.1], "fgsm": [0.4, 0.4, 0.1, 0.1]})
    assert len(fig.axes[0].lines) == 2
    with pytest.raises(ValueError, match="one per bin"):
        plot_nz(edges, {"clean": [0.5, 0.5]})
    with pytest.raises(ValueError, match="at least one"):
        plot_pit_histograms({})
