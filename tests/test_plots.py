"""Every plot renders a non-blank PNG of the expected pixel size and a PDF."""
import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from advrobust import plots
from advrobust.evaluate import church_window
from advrobust.metrics import certified_accuracy


def _check(fig, tmp_path, name):
    png, pdf = plots.save_figure(fig, str(tmp_path / name))
    img = mpimg.imread(png)
    w, h = fig.get_size_inches()
    assert img.shape[:2] == (round(h * plots.DPI), round(w * plots.DPI))
    rgb = img[..., :3]
    assert rgb.std() > 0.02 and (rgb < 0.5).mean() > 0.002  # not blank: some dark ink, some contrast
    with open(pdf, "rb") as f:
        assert f.read(5) == b"%PDF-"
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>" or not ax.get_visible():
            continue
        assert ax.get_xlabel() and ax.get_ylabel(), f"{name}: an axis lacks a label"


def test_photoz_comparison(tmp_path):
    rng = np.random.default_rng(0)
    zs = rng.uniform(0.05, 0.8, 300)
    fig = plots.plot_photoz_comparison(zs, {"clean": zs + 0.02 * (1 + zs) * rng.normal(size=300),
                                            "FGSM eps=0.01": zs + 0.1 * rng.normal(size=300)})
    _check(fig, tmp_path, "photoz")
    assert fig.get_size_inches().tolist() == [8.0, 7.0]


def test_perturbation(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(5, 16, 16, generator=g, dtype=torch.float64)
    x_adv = x + 0.01 * torch.sign(torch.randn(5, 16, 16, generator=g, dtype=torch.float64))
    centres = np.linspace(0.0025, 0.9975, 180)
    pdf = np.exp(-0.5 * ((centres - 0.3) / 0.05) ** 2)
    pdf2 = np.exp(-0.5 * ((centres - 0.5) / 0.08) ** 2)
    fig = plots.plot_perturbation(x, x_adv, bands="ugriz", pdf_clean=pdf / pdf.sum(), pdf_adv=pdf2 / pdf2.sum(),
                                  bin_centres=centres, z_spec=0.31)
    _check(fig, tmp_path, "perturbation")
    with pytest.raises(ValueError, match="bin_centres"):
        plots.plot_perturbation(x, x_adv, pdf_clean=pdf)


def test_church_window_plot(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 3))
    x = torch.randn(2, 2, 2)
    cw = church_window(model, x, torch.randn(2, 2, 2), torch.randn(2, 2, 2), steps=21, extent=(-3.0, 3.0))
    _check(plots.plot_church_window(cw), tmp_path, "church")


@pytest.mark.parametrize("dims", [2, 3])
def test_isomap(tmp_path, dims):
    rng = np.random.default_rng(0)
    z10 = rng.normal(size=(40, 16)) + np.repeat(np.eye(16)[:3] * 4, [14, 13, 13], axis=0)
    z1 = z10 + rng.normal(size=(40, 16))
    lab = np.repeat([0, 1, 2], [14, 13, 13])
    emb = plots.isomap_embedding({"Y10": z10, "Y1": z1}, dims)
    assert emb["Y10"].shape == (40, dims) and emb["Y1"].shape == (40, dims)
    fig = plots.plot_isomap({"Y10": z10, "Y1": z1}, {"Y10": lab, "Y1": lab}, n_components=dims)
    _check(fig, tmp_path, f"isomap{dims}")
    with pytest.raises(ValueError, match="2 or 3"):
        plots.isomap_embedding({"a": z10}, 4)


def test_distance_histograms(tmp_path):
    rng = np.random.default_rng(0)
    fig = plots.plot_distance_histograms({"regular": rng.gamma(2, 1, 200), "domain adaptation": rng.gamma(4, 1, 200)})
    assert "JS distance" in fig.axes[0].get_title()
    assert fig.axes[0].get_xlabel().endswith("[latent units]")
    _check(fig, tmp_path, "distances")
    rel = plots.plot_distance_histograms({"a": rng.gamma(2, 1, 50)}, unit="median clean latent norm")
    assert rel.axes[0].get_xlabel().endswith("[median clean latent norm]")


def test_certified_accuracy_plot(tmp_path):
    rng = np.random.default_rng(0)
    radii = np.linspace(0, 1, 21)
    curves = {}
    for sigma in (0.12, 0.25, 0.5):
        r = rng.exponential(sigma, 100)
        curves[f"sigma={sigma}, n=1000"] = (radii, certified_accuracy(np.zeros(100, int), r, np.zeros(100, int), radii))
    _check(plots.plot_certified_accuracy(curves), tmp_path, "certified")
