"""The report folder: every table row, every linked figure, a self-contained HTML."""
import os
import re

import numpy as np
import pytest
import torch

from advrobust import plots
from advrobust.evaluate import evaluate_grid, natural
from advrobust.attacks import FGSM, gaussian_noise
from advrobust.report import ReportTable, format_cell, write_report

COLUMNS = ["natural", "FGSM", "PGD-inf", "PGD-2", "one-pixel", "Y1 noise"]


def _tables():
    acc = ReportTable(
        "Accuracy under attack",
        rows={"basic": {"natural": 0.582, "FGSM": 0.0381, "PGD-inf": 0.0029},
              "PGD-2 AT": {"natural": 0.5478, "FGSM": 0.25, "one-pixel": 0.4, "Y1 noise": 0.3}},
        columns=COLUMNS,
        paper={"natural": {"basic": 0.582, "randomized smoothing": 0.5971}},
        paper_source="robust-models report, Table 1")
    pz = ReportTable("Photo-z under attack", columns=COLUMNS[:3], note="bias / sigma_MAD / eta",
                     rows={"Iref": {"natural": {"bias": 1e-4, "sigma_mad": 0.0123, "eta": 0.011},
                                    "FGSM": {"bias": 2e-3, "sigma_mad": 0.09, "eta": 0.45}}})
    return [acc, pz]


def test_format_cell():
    assert format_cell(0.5) == "50.00%"
    assert format_cell({"bias": 1e-4, "sigma_mad": 0.0123, "eta": 0.011}) == "1.00e-04 / 1.23e-02 / 1.1%"
    assert format_cell(None) == "-" and format_cell(3.0, percent=False) == "3"


def test_report_holds_every_row_and_figure_and_html_is_self_contained(tmp_path):
    rng = np.random.default_rng(0)
    zs = rng.uniform(0.05, 0.8, 200)
    fig = plots.plot_photoz_comparison(zs, {"clean": zs + 0.02 * rng.normal(size=200)})
    png = plots.save_figure(plots.plot_distance_histograms({"a": rng.gamma(2, 1, 50)}), str(tmp_path / "d"))[0]
    out = write_report(tmp_path / "rep", tables=_tables(), figures={"dz histograms": fig, "latent distances": png},
                       config={"seed": 0, "attacks": {"FGSM": {"eps": 0.01}}}, sky_sigma=[1e-3, 2e-3],
                       bands=["g", "r"], eps={"FGSM": 0.01, "PGD-inf": [0.01, 0.02]},
                       timings={"train": 1.5, "attack": 2.25}, findings=["FGSM <x> sigma_MAD by 3.1"])
    md = open(out["markdown"], encoding="utf-8").read()
    page = open(out["html"], encoding="utf-8").read()
    for text in (md, page):
        for row in ("basic", "PGD-2 AT", "randomized smoothing", "Iref"):
            assert row in text
        for col in COLUMNS:
            assert col in text
        assert "natural [robust-models report, Table 1]" in text
        assert "59.71%" in text and "58.20%" in text and "1.23e-02" in text
        assert "torch" in text and torch.__version__ in text and "total" in text and "3.75" in text
        # eps as multiples of each band's sky sigma: 0.01 / 1e-3 = 10, 0.01 / 2e-3 = 5, 0.02 / 2e-3 = 10
        assert "eps / sigma_sky(g)" in text
    assert "## Findings (measured in this run)\n\n- FGSM &lt;x&gt; sigma_MAD by 3.1\n" in md  # HTML escaped
    assert "<li>FGSM &lt;x&gt; sigma_MAD by 3.1</li>" in page and md.index("## Findings") < md.index("## Results")
    assert "| FGSM | 0.01 | 10 | 5 |" in md and "| PGD-inf | 0.01, 0.02 | 10 | 10 |" in md
    links = re.findall(r"\]\((figures/[^)]+)\)", md)
    assert {"figures/dz_histograms.png", "figures/dz_histograms.pdf", "figures/latent_distances.png"} <= set(links)
    for link in links:
        assert os.path.isfile(tmp_path / "rep" / link), link
    assert page.count('src="data:image/png;base64,') == 2
    # no external request: no src/href/url() that loads anything but inline data
    for ref in re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", page) + re.findall(r"url\(([^)]*)\)", page):
        assert ref.startswith("data:"), ref
    assert "http://" not in page and "https://" not in page and "<script" not in page and "<link" not in page


def test_report_from_a_grid(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 3))
    x, y = torch.randn(10, 2, 2, 2), torch.randint(0, 3, (10,))
    res = evaluate_grid({"linear": model}, {"FGSM": lambda m: FGSM(m, eps=0.1),
                                            "noise": natural(gaussian_noise, sigma=0.1)}, x, y)
    out = write_report(tmp_path, tables=[ReportTable("grid", res.cells())],
                       timings={f"linear/{a}": s for a, s in res.seconds["linear"].items()})
    md = open(out["markdown"]).read()
    assert format_cell(res.scores["linear"]["FGSM"]["accuracy"]) in md and "linear/noise" in md


def test_report_errors(tmp_path):
    with pytest.raises(ValueError, match="paper_source"):
        ReportTable("t", rows={}, paper={"natural": {"a": 0.5}})
    with pytest.raises(ValueError, match="sky_sigma"):
        write_report(tmp_path, sky_sigma=[0.0, 1e-3])
    with pytest.raises(ValueError, match="band names"):
        write_report(tmp_path, sky_sigma=[1e-3], bands=["g", "r"])
